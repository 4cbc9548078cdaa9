"""Every `splatnlp-mechinterp` command in a ```bash block of README.md, SKILL.md and
skills/*/SKILL.md runs, in order, against the tiny demo contexts (one scratch folder per
document, so a block can use files an earlier one wrote). The `make` set-up lines are what CI
itself runs, so they are not repeated here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "SKILL.md", *sorted((ROOT / "skills").glob("*/SKILL.md"))]
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
SKIPPED_PREFIXES = ("make ", "pip ", "export ")


def commands(doc: Path) -> list[str]:
    out = []
    for block in _BLOCK.findall(doc.read_text()):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith(SKIPPED_PREFIXES):
                continue
            out.append(line)
    return out


def test_every_bash_line_is_a_known_kind() -> None:
    for doc in DOCS:
        for line in commands(doc):
            assert line.startswith("splatnlp-mechinterp "), f"{doc.name}: cannot check {line!r}"


@pytest.mark.parametrize("doc", [d for d in DOCS if commands(d)], ids=lambda d: d.name)
def test_commands_run(doc: Path, demo_contexts: Path, tmp_path: Path) -> None:
    env = dict(os.environ, SPLATNLP_CONTEXTS_DIR=str(demo_contexts))
    for line in commands(doc):
        argv = shlex.split(line, comments=True)
        result = subprocess.run(
            [sys.executable, "-m", "splatnlp.mechinterp", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{doc.name}: {line!r} exited {result.returncode}:\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), f"{doc.name}: {line!r} printed nothing"
