"""One builder per world: an exclusive lock file beside the world's folder.

Two ``build`` processes started on overlapping worlds (e.g. ``--all`` in one and ``--world X`` in
another, to use both cores) both saw no ground truth and both built the same world, the second
deleting the first's half-written files (seen on 2026-12-04 with test_std_16x_frac_d1). The lock
is a file created with ``O_CREAT | O_EXCL``, atomic on a local file system, holding the owner's
process id; a second builder gets a clear error instead of racing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WorldLocked", "world_lock"]


class WorldLocked(RuntimeError):
    """Another build holds the world's lock (or one crashed and left it)."""


@contextmanager
def world_lock(out: str | Path, name: str) -> Iterator[Path]:
    """Hold ``out/<name>.lock`` while the block runs; removed on exit, also on error.

    Raises
    ------
    WorldLocked when the lock exists: the message names the file and the process that holds it.
    """
    path = Path(out) / f"{name}.lock"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            owner = path.read_text().strip() or "unknown"
        except OSError:
            owner = "unknown"
        raise WorldLocked(
            f"world {name!r} is being built by process {owner} (lock {str(path)!r}); wait for it, or "
            "delete the lock if no build is running (a crashed build leaves it)"
        ) from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        yield path
    finally:
        path.unlink(missing_ok=True)
