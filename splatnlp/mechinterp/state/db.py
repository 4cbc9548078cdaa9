"""The open database file: connection settings, schema set-up, retries on a busy lock, and
transactions.

Every write is one ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction, so a writer killed half-way
leaves nothing behind, and writers queue for the lock (``busy_timeout``, then retries for
:data:`BUSY_TIMEOUT_S`) instead of failing. :class:`Database` is the base of
:class:`~splatnlp.mechinterp.state.store.ResearchStore`, which adds the records.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from splatnlp.mechinterp.state.location import ENV_STORE, store_path
from splatnlp.mechinterp.state.schema import SCHEMA_VERSION, check_not_newer, read_version, upgrade

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another writer's lock before giving up."""

T = TypeVar("T")
_D = TypeVar("_D", bound="Database")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_read_only(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused a write because the file (or its folder) cannot be written."""
    return "readonly" in str(exc).lower()


class Database:
    """An open research-state database file, brought to :data:`SCHEMA_VERSION` when opened.

    Parameters
    ----------
    path : str or Path, optional
        The database file; default :func:`store_path`. Created (with its folder) if absent.
    busy_timeout_s : float
        How long a write waits for another process's write lock before ``TimeoutError``.

    One connection per instance; use an instance from one thread only. Use as a context
    manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path).expanduser() if path is not None else store_path()
        self.busy_timeout_s = busy_timeout_s
        self._depth = 0  # > 0 inside transaction(): writes join the open transaction
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE.
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ValueError(
                f"cannot open the research store {str(self.path)!r}: {exc}; set "
                f"${ENV_STORE} or store_path in the config file to a writable file"
            ) from exc
        try:
            self._configure()
            self._ensure_schema()
        except BaseException:
            self._conn.close()
            raise

    # connection set-up
    def _configure(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        try:
            mode = self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"{str(self.path)!r} is not a research store (not a SQLite database: {exc})"
            ) from exc
        if str(mode).lower() != "wal":
            # Some network file systems cannot hold the WAL index; transactions stay correct.
            warnings.warn(
                f"the research store {str(self.path)!r} could not use WAL mode (got {mode!r}); "
                "concurrent readers will wait for writers",
                stacklevel=3,
            )
        # FULL, not NORMAL: with NORMAL a WAL commit survives a crashed process but may be lost
        # on power failure. Writes here are few and small (one per hypothesis or link), so an
        # fsync per commit costs little, and "committed" then means on disk.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")

    def _ensure_schema(self) -> None:
        version = self._retrying(lambda: read_version(self._conn, self.path))
        check_not_newer(version, self.path)
        if version == SCHEMA_VERSION:
            return

        def migrate(conn: sqlite3.Connection) -> None:
            # Read again under the write lock: another process may have upgraded meanwhile.
            current = read_version(conn, self.path)
            check_not_newer(current, self.path)
            upgrade(conn, current)

        self._write(migrate)

    def _not_writable(self, exc: sqlite3.OperationalError) -> ValueError:
        return ValueError(
            f"the research store {str(self.path)!r} is not writable ({exc}); nothing was "
            f"written. Make the file and its folder writable, or point --store / ${ENV_STORE} / "
            "store_path in the config file at a writable file"
        )

    def check_writable(self) -> None:
        """Raise ``ValueError`` naming the file unless this process can write to the store now.

        Takes the write lock and changes nothing (the probe is rolled back); a writer holding
        the lock longer than ``busy_timeout_s`` gives ``TimeoutError``. Call it before a long
        computation whose result is to be recorded.
        """
        if self._depth:  # inside transaction(): the write lock is already held
            return

        def attempt() -> None:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                # A no-op update still needs the file writable: SQLite refuses it read-only.
                self._conn.execute(
                    "UPDATE schema_meta SET value = value WHERE key = 'schema_version'"
                )
            finally:
                self._conn.execute("ROLLBACK")

        try:
            self._retrying(attempt)
        except sqlite3.OperationalError as exc:
            if not _is_read_only(exc):
                raise
            raise self._not_writable(exc) from exc

    @property
    def schema_version(self) -> int:
        """The version of the open database (always :data:`SCHEMA_VERSION` once opened)."""
        version = read_version(self._conn, self.path)
        return -1 if version is None else version

    # transactions
    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, again while SQLite says the database is locked, for busy_timeout_s."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"the research store {str(self.path)!r} stayed locked by another writer "
                        f"for {self.busy_timeout_s:g} s ({exc}); retry, or look for a stuck process"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction (or in the open :meth:`transaction`)."""
        if self._depth:
            return fn(self._conn)

        def attempt() -> T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return result

        try:
            return self._retrying(attempt)
        except sqlite3.OperationalError as exc:
            if not _is_read_only(exc):
                raise
            raise self._not_writable(exc) from exc

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on one consistent snapshot (a read transaction)."""
        if self._depth:
            return fn(self._conn)

        def attempt() -> T:
            self._conn.execute("BEGIN")
            try:
                return fn(self._conn)
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

        return self._retrying(attempt)

    @contextlib.contextmanager
    def transaction(self: _D) -> Iterator[_D]:
        """Group several writes into one transaction: all are committed, or none.

        ``with store.transaction(): store.record_link(a); store.record_link(b)``
        """
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._retrying(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        self._depth = 1
        try:
            yield self
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if not _is_read_only(exc):
                raise
            raise self._not_writable(exc) from exc
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


__all__ = ["BUSY_TIMEOUT_S", "Database"]
