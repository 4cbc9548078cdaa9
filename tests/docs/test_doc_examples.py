"""Every Python code block in README.md, SKILL.md and skills/*/SKILL.md runs against the tiny demo,
so the documentation cannot drift from the code."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "SKILL.md", *sorted((ROOT / "skills").glob("*/SKILL.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        for i, match in enumerate(_BLOCK.finditer(doc.read_text())):
            out.append((str(doc.relative_to(ROOT)), i, match.group(1)))
    return out


@pytest.mark.parametrize(("doc", "index", "code"), _blocks(), ids=lambda v: str(v)[:40])
def test_python_block_runs(
    doc: str, index: int, code: str, demo_contexts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From the repository root, as a user of a clone would run it: the conftest's check then
    # catches an example that writes into the checkout.
    monkeypatch.chdir(ROOT)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(code, f"{doc}[block {index}]", "exec"), {"__name__": "__doc_example__"})
    assert stdout.getvalue().strip(), f"{doc} block {index} printed nothing"


def test_every_skill_has_valid_front_matter() -> None:
    import yaml

    for path in [ROOT / "SKILL.md", *sorted((ROOT / "skills").glob("*/SKILL.md"))]:
        text = path.read_text()
        assert text.startswith("---\n"), path
        meta = yaml.safe_load(text.split("---\n")[1])
        assert re.fullmatch(r"[a-z0-9-]{1,64}", meta["name"]), path
        assert 0 < len(meta["description"]) <= 1024, path
        if path.parent.parent == ROOT / "skills":
            assert meta["name"] == path.parent.name
        assert len(text.splitlines()) < 500
