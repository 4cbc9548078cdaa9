"""The package's imports follow the data flow: context <- analysis.metrics <- analysis.match /
analysis.align <- demo / state <- cli, and no module imports itself through a circle.

Run alone with ``python -m pytest tests/mechinterp/test_layers.py -q``; every import statement is
read with ``ast`` (those inside functions too), so a lazy import cannot hide an upward edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "splatnlp.mechinterp"
ROOT = Path(__file__).resolve().parents[2] / "splatnlp" / "mechinterp"

LAYERS: dict[str, int] = {
    "_lazy": 0,
    "_threads": 0,  # BLAS threads limited during a query (threadpoolctl)
    "context": 0,
    "analysis.metrics": 1,
    "analysis.align": 2,
    "analysis.match": 3,  # the matcher may read a saved alignment; alignment never imports it
    "analysis": 3,  # the package's lazy re-exports
    "skill_helpers": 3,
    "demo": 4,
    "state": 4,
    "report": 4,  # HTML pages over the analysis results; the CLI writes them
    "cli": 5,
    "__main__": 6,
}
"""Rank of each part; an import may only go to the same or a lower rank."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts]) if parts else PACKAGE


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_module(name: str) -> bool:
    return name in MODULES


def _imports(name: str) -> set[str]:
    """Package modules that ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if _is_module(sub) else base)
    out.discard(name)
    return {m for m in out if _is_module(m)}


GRAPH = {name: _imports(name) for name in MODULES}


def _part(name: str) -> str:
    rel = name[len(PACKAGE) + 1 :]
    for part in sorted(LAYERS, key=len, reverse=True):
        if rel == part or rel.startswith(part + "."):
            return part
    raise KeyError(f"module {name!r} is in no layer; add its folder to LAYERS")


@pytest.mark.parametrize("name", sorted(MODULES), ids=lambda n: n[len(PACKAGE) + 1 :] or "root")
def test_no_upward_import(name: str) -> None:
    if name == PACKAGE:
        return
    rank = LAYERS[_part(name)]
    upward = sorted(t for t in GRAPH[name] if t != PACKAGE and LAYERS[_part(t)] > rank)
    assert not upward, f"{name} (layer {_part(name)}) imports higher layers: {upward}"


def test_no_import_circle() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checker_sees_lazy_imports() -> None:
    """The walker is not vacuous: imports inside functions (the CLI loads the API lazily, to start
    fast) are edges too."""
    assert f"{PACKAGE}.context" in GRAPH[f"{PACKAGE}.skill_helpers"]
    cli_targets = {t for m, ts in GRAPH.items() if m.startswith(f"{PACKAGE}.cli") for t in ts}
    assert any(t.startswith(f"{PACKAGE}.analysis") for t in cli_targets)
    assert any(t.startswith(f"{PACKAGE}.state") for t in cli_targets)
