"""Builders shared by the report tests: a pair of contexts whose tokens and names are HTML, and a
parser that reads a page's tables, images and embedded data back out of its HTML."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from helpers import random_sae

from splatnlp.mechinterp.context import MechInterpContext, build_context
from splatnlp.mechinterp.context.examples import ExampleSet
from splatnlp.mechinterp.context.vocab import Vocab

HOSTILE_TOKENS = [
    "<script>alert(1)</script>",
    "a&b \"quoted\" 'single'",
    "</td><td>cell",
    "<img src=x onerror=alert(2)>",
    *(f"plain_{i}" for i in range(8)),
]
"""Tokens a page must show as text, never as markup."""
HOSTILE_SOURCE_NAME = "src <b>bold</b> & co"
HOSTILE_TARGET_NAME = "tgt \"quoted\" <i>it</i> & 'x'"
N_HOSTILE_EXAMPLES, N_HOSTILE_SOURCE, N_HOSTILE_TARGET = 240, 6, 14


def build_hostile_pair(root: Path, seed: int = 0) -> tuple[MechInterpContext, MechInterpContext]:
    """Contexts ``ultra`` (6 features) and ``full`` (14) over one generic-token example set whose
    tokens are :data:`HOSTILE_TOKENS`; each source feature fires with a hostile theme token, and
    target features 2k and 2k + 1 split source feature k, so matches, children and token tables
    are all non-empty."""
    rng = np.random.default_rng(seed)
    n = N_HOSTILE_EXAMPLES
    src = np.zeros((n, N_HOSTILE_SOURCE), dtype=np.float32)
    tgt = np.zeros((n, N_HOSTILE_TARGET), dtype=np.float32)
    records = []
    for i in range(n):
        tokens = list(rng.choice(HOSTILE_TOKENS[4:], size=2, replace=False))
        for k in range(N_HOSTILE_SOURCE):
            if rng.random() < 0.15:
                child = 2 * k + int(rng.random() < 0.5)
                value = float(rng.random() + 0.2)
                tgt[i, child] = value
                src[i, k] = value + 0.05 * float(rng.random())
                tokens.append(HOSTILE_TOKENS[k % 4])
        tgt[i, 12:] = rng.random(2) * (rng.random(2) < 0.1)
        records.append({"id": i, "tokens": list(dict.fromkeys(tokens))})
    vocab = Vocab.from_tokens(HOSTILE_TOKENS)
    examples = ExampleSet.from_records(records, vocab=vocab)
    source = build_context(
        root / "ultra",
        sae=random_sae(seed + 1, d_model=8, n_features=N_HOSTILE_SOURCE),
        examples=examples,
        codes=sp.csr_matrix(src),
        name=HOSTILE_SOURCE_NAME,
        model_type="ultra",
        n_top_examples=20,
        progress=False,
    )
    target = build_context(
        root / "full",
        sae=random_sae(seed + 2, d_model=8, n_features=N_HOSTILE_TARGET),
        examples=examples,
        codes=sp.csr_matrix(tgt),
        name=HOSTILE_TARGET_NAME,
        model_type="full",
        n_top_examples=20,
        progress=False,
    )
    return source, target


class Page(HTMLParser):
    """A page's tables (by id: rows of cell texts), image sources (by the id of their
    ``<figure>``), element ids and ``<script>`` elements, read with the standard parser."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str | None, list[str]] = {}
        self.ids: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.text_by_id: dict[str, str] = {}
        self._table: list[str] = []
        self._figure: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._open_ids: list[tuple[str, str, int]] = []
        self._chunks: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
            self._open_ids.append((tag, a["id"], len(self._chunks)))
        if tag == "table":
            self._table.append(a.get("id") or f"table-{len(self.tables)}")
            self.tables[self._table[-1]] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            self.images.setdefault(self._figure, []).append(a.get("src") or "")
        elif tag == "script":
            self.scripts.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            if self._row:
                self.tables[self._table[-1]].append(self._row)
            self._row = None
        elif tag == "table" and self._table:
            self._table.pop()
        elif tag == "figure":
            self._figure = None
        for k in range(len(self._open_ids) - 1, -1, -1):
            if self._open_ids[k][0] == tag:
                _, ident, start = self._open_ids.pop(k)
                self.text_by_id[ident] = "".join(self._chunks[start:])
                break

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)
        if self._cell is not None:
            self._cell.append(data)


def page_data(text: str) -> dict:
    """The JSON a page embeds in ``<script type="application/json" id="report-data">``."""
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S
    )
    assert match is not None, "no report-data script in the page"
    return json.loads(match.group(1))


def png_of(src: str) -> bytes:
    """The PNG bytes of a ``data:image/png;base64,...`` source."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix) :], validate=True)


def external_references(text: str) -> list[str]:
    """``src``/``href`` values that would leave the page (anything but ``data:`` and ``#``)."""
    return [
        v for v in re.findall(r'(?:src|href)="([^"]*)"', text) if not v.startswith(("data:", "#"))
    ]
