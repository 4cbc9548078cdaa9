"""Documented examples must not leave files in the checkout: each docs test is wrapped in a check
that ``git status`` shows no new untracked (and not ignored) path afterwards."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def untracked() -> set[str] | None:
    """Untracked paths that .gitignore does not cover, or None outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line[3:] for line in out.splitlines() if line.startswith("?? ")}


@pytest.fixture(autouse=True)
def leaves_no_untracked_files() -> None:
    before = untracked()
    yield
    after = untracked()
    if before is not None and after is not None:
        new = sorted(after - before)
        assert not new, f"running this example left untracked files in the checkout: {new}"
