"""Every `splatnlp-mechinterp` command in a ```bash block of README.md, SKILL.md and
skills/*/SKILL.md runs, in order, against the tiny demo contexts (one scratch folder per
document, so a block can use files an earlier one wrote). The `make` set-up lines are what CI
itself runs, so they are not repeated here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
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


_OUTPUT_FLAGS = ("--out", "--output", "--export-inputs")


def output_paths(line: str) -> list[str]:
    """Folders and files a documented command writes: the values of its output flags and the
    folder that `context build` creates."""
    argv = shlex.split(line, comments=True)
    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in _OUTPUT_FLAGS]
    if argv[1:3] == ["context", "build"]:
        paths.append(argv[3])
    return paths


def test_every_output_path_is_ignored_by_git() -> None:
    """A user who runs the examples from the repository root gets only ignored files."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for doc in DOCS:
        for line in commands(doc):
            for path in output_paths(line):
                if Path(path).is_absolute():
                    continue
                ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode
                assert ignored == 0, f"{doc.name}: {line!r} writes {path!r}, which .gitignore does not cover"


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
