"""Write a folder atomically: build it under a hidden name beside the target, then rename it in.

Contexts, the demo and alignment tables are folders of many files; a reader must see either the
old folder or the complete new one, never a mix, even when the writer is killed half-way.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

__all__ = ["publish_dir", "staging_dir"]


def staging_dir(out_dir: Path) -> Path:
    """A fresh hidden folder beside ``out_dir`` to build into (same filesystem, so the final
    rename is atomic); hidden names are never listed as contexts."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def publish_dir(tmp: Path, out_dir: Path) -> None:
    """Move a completed ``tmp`` folder to ``out_dir``, replacing any previous one; the old folder
    is renamed away first, so a reader sees either the old or the new one, never a mix."""
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)
