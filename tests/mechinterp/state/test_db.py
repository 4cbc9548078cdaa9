"""Tests of splatnlp/mechinterp/state/db.py: connection settings, files that are not stores,
transactions, and the store under concurrent and killed writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from state_builders import _link

from splatnlp.mechinterp.state.schema import SCHEMA_VERSION
from splatnlp.mechinterp.state.store import ResearchStore

needs_fork = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="needs the 'fork' start method"
)


def test_connection_settings(store: ResearchStore, db: Path) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert store.schema_version == SCHEMA_VERSION == 2
    with sqlite3.connect(db) as other:  # WAL is a property of the file, not of one connection
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_files_that_are_not_stores_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(
        ValueError, match=r"other\.sqlite' is a SQLite database but not a research store"
    ):
        ResearchStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"junk\.sqlite' is not a research store \(not a SQLite"):
        ResearchStore(junk)


def test_transaction_groups_writes_and_rolls_back_together(store: ResearchStore) -> None:
    with store.transaction():
        store.record_link(_link(1))
        store.record_link(_link(2))
    assert store.count_links() == 2
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.record_link(_link(3))
        store.manager(3, "ultra").add_hypothesis("claim")
        raise RuntimeError("boom")
    assert store.count_links() == 2
    # The two committed links' sides (a link touches both); nothing of the rolled-back writes.
    assert store.features() == [("full", 512), ("ultra", 1), ("ultra", 2)]


# -- concurrency and crashes -----------------------------------------------------------------
def _record_links_at_once(path: str, worker: int, barrier: Any, results: Any, n: int) -> None:
    try:
        with ResearchStore(path) as s:
            barrier.wait(timeout=60)
            for i in range(n):
                s.record_link(_link(worker * 1000 + i, i, recorded_by=f"worker-{worker}"))
        results.put((worker, "ok"))
    except BaseException:  # noqa: BLE001 - the parent reports the child's traceback
        results.put((worker, traceback.format_exc()))


def _run_workers(target: Any, n_workers: int, path: Path, *extra: Any) -> None:
    """Run ``target(path, worker, barrier, results, *extra)`` in ``n_workers`` processes."""
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(n_workers), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(str(path), w, barrier, results, *extra))
        for w in range(n_workers)
    ]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == dict.fromkeys(range(n_workers), "ok"), outcomes
    assert [p.exitcode for p in procs] == [0] * n_workers


@needs_fork
def test_eight_processes_write_at_the_same_moment(db: Path) -> None:
    ResearchStore(db).close()
    _run_workers(_record_links_at_once, 8, db, 50)
    with ResearchStore(db) as s:
        links = s.links()
    assert len(links) == 400
    assert len({k.id for k in links}) == 400
    assert {(k.recorded_by, k.source_feature) for k in links} == {
        (f"worker-{w}", w * 1000 + i) for w in range(8) for i in range(50)
    }


def _open_fresh_and_add_hypotheses(
    path: str, worker: int, barrier: Any, results: Any, n: int
) -> None:
    try:
        barrier.wait(timeout=60)
        with ResearchStore(path) as s:
            m = s.manager(1, "full")
            for i in range(n):
                m.add_hypothesis(f"claim {i} of worker {worker}")
        results.put((worker, "ok"))
    except BaseException:  # noqa: BLE001
        results.put((worker, traceback.format_exc()))


@needs_fork
def test_processes_creating_a_fresh_store_and_numbering_one_feature_at_once(db: Path) -> None:
    # Creation races (schema set-up) and id allocation races (h001, h002 ...) in one go.
    _run_workers(_open_fresh_and_add_hypotheses, 6, db, 10)
    with ResearchStore(db) as s:
        state = s.feature_state(1, "full")
    assert [h.id for h in state.hypotheses] == [f"h{i:03d}" for i in range(1, 61)]
    assert {h.statement for h in state.hypotheses} == {
        f"claim {i} of worker {w}" for w in range(6) for i in range(10)
    }
    assert len(state.history) == 60


def _commit_then_hang(path: str, n_committed: int, in_transaction: Any) -> None:
    s = ResearchStore(path)
    for i in range(n_committed):
        s.record_link(_link(i, recorded_by="committed"))
    padding = {"padding": "x" * 2000}
    # A small page cache (256 KiB) and ~6 MB of rows: uncommitted pages must spill to the WAL.
    s._conn.execute("PRAGMA cache_size = -256")
    with s.transaction():
        for i in range(3000):
            s.record_link(_link(10_000 + i, recorded_by="uncommitted", report=padding))
        in_transaction.set()
        time.sleep(120)


@needs_fork
def test_writer_killed_mid_transaction_loses_only_the_uncommitted(db: Path) -> None:
    ctx = mp.get_context("fork")
    in_transaction = ctx.Event()
    child = ctx.Process(target=_commit_then_hang, args=(str(db), 20, in_transaction))
    child.start()
    try:
        assert in_transaction.wait(timeout=60), "the child never reached its open transaction"
        wal = db.with_name(db.name + "-wal")
        assert wal.stat().st_size > 1_000_000  # uncommitted data is on disk when the kill lands
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL

    with ResearchStore(db) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        links = s.links()
        assert [k.source_feature for k in links] == list(range(20))
        assert {k.recorded_by for k in links} == {"committed"}
        assert s.record_link(_link(99)) == 21  # the dead writer's lock is gone
