"""The world lock: one builder per world, released on success and on error."""

from __future__ import annotations

import os

import pytest

from benchmarks.worlds.lock import WorldLocked, world_lock


def test_a_second_builder_is_refused_with_the_owner_named(tmp_path) -> None:
    with world_lock(tmp_path, "w1") as path:
        assert path.read_text() == str(os.getpid())
        with pytest.raises(WorldLocked, match=rf"world 'w1' is being built by process {os.getpid()}.*w1\.lock"):
            with world_lock(tmp_path, "w1"):
                pass
        with world_lock(tmp_path, "w2"):  # another world is free
            pass
    assert not path.exists()
    with world_lock(tmp_path, "w1"):  # released: it can be taken again
        pass


def test_the_lock_is_released_when_the_build_fails(tmp_path) -> None:
    with pytest.raises(ValueError, match="boom"):
        with world_lock(tmp_path, "w"):
            raise ValueError("boom")
    assert not (tmp_path / "w.lock").exists()


def test_a_stale_lock_says_how_to_clear_it(tmp_path) -> None:
    (tmp_path / "w.lock").write_text("")
    with pytest.raises(WorldLocked, match="process unknown.*delete the lock if no build is running"):
        with world_lock(tmp_path, "w"):
            pass
    assert (tmp_path / "w.lock").exists()  # someone else's lock is never removed
