"""The saved pair index: its sums against brute force, matcher reports from it equal to reports
from the codes, and every refusal (other contexts, other schema)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import Pair, float_tol

from splatnlp.mechinterp.analysis import FeatureMatcher, align_contexts, save_tables
from splatnlp.mechinterp.analysis.align.index import (
    INDEX_DIR,
    INDEX_SCHEMA,
    IndexMismatch,
    codes_fingerprint,
    load_index,
)
from splatnlp.mechinterp.analysis.align.report import AlignOptions
from splatnlp.mechinterp.context import MechInterpContext

CHEAP = dict(n_null_features=8, n_null_directions=16)


@pytest.fixture(scope="module")
def pair_alignment(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP))
    return save_tables(tables, tmp_path_factory.mktemp("index") / "aligned")


@pytest.fixture(scope="module")
def tiny_alignment_dir(tiny_alignment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tables(tiny_alignment, tmp_path_factory.mktemp("tiny-index") / "aligned")


def test_index_holds_the_pair_sums(pair: Pair, pair_alignment: Path) -> None:
    index = load_index(pair_alignment / INDEX_DIR, pair.source, pair.target)
    A = pair.source_codes.astype(np.float64)
    B = pair.target_codes.astype(np.float64)
    dot = A.T @ B
    # float32 products summed per chunk, stored in float32: the rounding of both.
    tol = float_tol(np.float32, A.shape[0])
    assert (np.abs(index.dot - dot) <= tol * (np.abs(A).T @ np.abs(B))).all()
    np.testing.assert_array_equal(index.coactive, (A > 0).astype(np.int64).T @ (B > 0).astype(np.int64))
    Wa, Wb = (c.sae.W_dec.numpy().astype(np.float64) for c in (pair.source, pair.target))
    with np.errstate(invalid="ignore", divide="ignore"):  # zero decoder rows: NaN, as stored
        cos = (Wa / np.linalg.norm(Wa, axis=1, keepdims=True)) @ (Wb / np.linalg.norm(Wb, axis=1, keepdims=True)).T
    np.testing.assert_allclose(index.decoder, cos, atol=float_tol(np.float32, Wa.shape[1]))
    for f in range(pair.source.n_features):  # a row query reads exactly that row, as float64
        d, c, dec = index.rows("a", f)
        assert d.dtype == np.float64 and c.dtype == np.int64
        np.testing.assert_array_equal(d, index.dot[f].astype(np.float64))
        np.testing.assert_array_equal(c, index.coactive[f])
    d, c, _ = index.rows("b", 3)
    np.testing.assert_array_equal(c, index.coactive[:, 3])
    assert index.dot.flags.c_contiguous  # rows are one read; columns touch K_a pages


def test_index_is_written_only_for_a_full_alignment(pair: Pair, tmp_path: Path) -> None:
    part = align_contexts(pair.source, pair.target, options=AlignOptions(n_examples=50, **CHEAP))
    assert part.index is None
    assert not (save_tables(part, tmp_path / "part") / INDEX_DIR).exists()
    off = align_contexts(pair.source, pair.target, options=AlignOptions(keep_index=False, **CHEAP))
    assert off.index is None


def _dump(report) -> dict:
    out = report.model_dump(mode="json")
    out.pop("elapsed_ms")
    return out


def _assert_same(a, b, path: str = "") -> None:
    """Equal, floats to the float32 precision of the saved sums."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_reports_from_the_index_equal_reports_from_the_codes(tiny_demo_dir: Path, tiny_alignment, tiny_alignment_dir: Path) -> None:
    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    rng = np.random.default_rng(1)
    for src, tgt in ((ultra, full), (full, ultra)):
        fast = FeatureMatcher(src, tgt, alignment=tiny_alignment_dir)
        assert fast.index is not None
        codes = FeatureMatcher(src, tgt)  # no alignment: every sum and parent from the codes
        _, tab = tiny_alignment.side(src.model_type)
        labels = tab["class_label"].astype(str)
        ids = [int(rng.choice(np.flatnonzero(labels == c))) for c in sorted(set(labels))]
        for f in ids:
            a, b = _dump(codes.find_matches(f)), _dump(fast.find_matches(f))
            assert b.pop("alignment") is not None and a.pop("alignment") is None
            assert "alignment" in a["undefined"] and "alignment" not in b["undefined"]
            a["undefined"].pop("alignment")
            _assert_same(a, b, f"{src.model_type} {f}")
            _assert_same(
                codes.find_decomposition(f).model_dump(mode="json"), fast.find_decomposition(f).model_dump(mode="json")
            )


def test_children_gram_of_the_index_is_the_childrens_product(tiny_demo_dir: Path, tiny_alignment, tiny_alignment_dir: Path) -> None:
    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    index = load_index(tiny_alignment_dir / INDEX_DIR, full, ultra)
    assert index.children_offsets is not None and index.children_gram is not None
    _, large = tiny_alignment.side("ultra")
    parent = large["parent"]
    dense = ultra.codes.csc
    n_children = np.bincount(parent[parent >= 0], minlength=full.n_features)
    for s in np.flatnonzero(n_children >= 2)[:5]:
        children = np.flatnonzero(parent == s)
        x = dense[:, children].toarray().astype(np.float64)
        members = children[::-1][:3]  # any subset, any order
        got = index.children_gram_of(int(s), children, members)
        want = x.T @ x
        pos = [int(np.searchsorted(children, m)) for m in members]
        # Non-negative products summed in float64 over every example, in another order.
        np.testing.assert_allclose(got, want[np.ix_(pos, pos)], rtol=float_tol(np.float64, ultra.n_examples), atol=0)
        assert index.children_gram_of(int(s), children[:-1], members[:1]) is None  # another list
        source = full.codes.feature(int(s))[0]
        assert index.children_covered_of(int(s)) == int((x[source] > 0).any(axis=1).sum())


def test_an_index_without_children_grams_answers_the_same(tiny_demo_dir: Path, tiny_alignment_dir: Path, tmp_path: Path) -> None:
    # An index written before the children Gram matrices (or without numba): the decomposition
    # reads the children's codes instead, with the same reports.
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_alignment_dir, old)
    meta = json.loads((old / INDEX_DIR / "index.json").read_text())
    for key in ("children_offsets", "children_gram", "children_covered"):
        meta["arrays"].pop(key)
        (old / INDEX_DIR / f"{key}.npy").unlink()
    (old / INDEX_DIR / "index.json").write_text(json.dumps(meta))
    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    with_gram, without = FeatureMatcher(full, ultra, alignment=tiny_alignment_dir), FeatureMatcher(full, ultra, alignment=old)
    assert without.index is not None and without.index.children_gram is None
    split = [int(f) for f in np.flatnonzero(np.asarray(with_gram.alignment.a["n_assigned"]) >= 2)[:5]]
    parent = np.asarray(with_gram.alignment.b["parent"])
    for f in split:
        a, b = with_gram.find_decomposition(f), without.find_decomposition(f)
        members = [m.feature for m in a.members]
        assert members == [m.feature for m in b.members]
        # The two Gram matrices differ by float64 summation order over the examples; the fit
        # amplifies that by at most the Gram matrix's condition number.
        gram = with_gram.index.children_gram_of(f, np.flatnonzero(parent == f), np.array(members))
        tol = float_tol(np.float64, ultra.n_examples, scale=float(np.linalg.cond(gram)))
        weights = np.array([m.weight for m in a.members])
        np.testing.assert_allclose(weights, [m.weight for m in b.members], rtol=tol, atol=tol * weights.max())
        assert a.r_squared == pytest.approx(b.r_squared, rel=tol) and a.coverage == b.coverage


def test_children_arrays_that_do_not_fit_are_refused(pair: Pair, tmp_path: Path) -> None:
    from splatnlp.mechinterp.analysis.align.index import index_meta, write_index

    k_a, k_b = pair.source.n_features, pair.target.n_features
    base = {"dot": np.zeros((k_a, k_b)), "coactive": np.zeros((k_a, k_b), np.uint32)}
    meta = index_meta(pair.source, pair.target, pair.source.n_examples)
    k_small = min(k_a, k_b)
    good = {"children_offsets": np.zeros(k_small + 1, np.int64), "children_gram": np.zeros(0), "children_covered": np.zeros(k_small, np.int64)}
    write_index(tmp_path / "ok", {**base, **good}, meta)
    with pytest.raises(ValueError, match="needs all of"):
        write_index(tmp_path / "partial", {**base, "children_gram": np.zeros(0)}, meta)
    with pytest.raises(ValueError, match=f"do not fit {k_small} smaller-side features"):
        write_index(tmp_path / "short", {**base, **good, "children_covered": np.zeros(k_small - 1, np.int64)}, meta)
    # A loaded index whose files were edited to disagree is refused with the rebuild command.
    np.save(tmp_path / "ok" / "children_covered.npy", np.zeros(k_small + 3, np.int64))
    with pytest.raises(IndexMismatch, match="do not fit"):
        load_index(tmp_path / "ok", pair.source, pair.target)


def test_matcher_refuses_an_index_of_other_codes(pair: Pair, pair_alignment: Path, tmp_path: Path) -> None:
    # Another SAE over the same examples.
    forged = _forged(pair_alignment, tmp_path, lambda m: m["b"].update(codes_fingerprint="sha256:" + "0" * 64))
    with pytest.raises(IndexMismatch, match=r"was computed on contexts .*not on") as err:
        load_index(forged, pair.source, pair.target)
    assert codes_fingerprint(pair.target)[:19] in str(err.value) and "0000000000" in str(err.value)
    assert "splatnlp-mechinterp align" in str(err.value)


def test_index_of_another_example_set_is_refused(pair: Pair, pair_alignment: Path, tmp_path: Path) -> None:
    def other_examples(meta: dict) -> None:
        meta["a"]["example_fingerprint"] = meta["b"]["example_fingerprint"] = "sha256:" + "1" * 64

    forged = _forged(pair_alignment, tmp_path, other_examples)
    with pytest.raises(IndexMismatch, match="example set sha256:1111") as err:
        load_index(forged, pair.source, pair.target)
    assert pair.source.fingerprint in str(err.value)


def test_index_of_an_older_schema_is_refused_with_the_rebuild_command(pair: Pair, pair_alignment: Path, tmp_path: Path) -> None:
    meta = json.loads((pair_alignment / INDEX_DIR / "index.json").read_text())
    meta["schema"] = INDEX_SCHEMA - 1
    old = tmp_path / "aligned" / INDEX_DIR
    old.mkdir(parents=True)
    (old / "index.json").write_text(json.dumps(meta))
    with pytest.raises(IndexMismatch, match=rf"schema {INDEX_SCHEMA - 1}.*reads schema {INDEX_SCHEMA}") as err:
        load_index(old, pair.source, pair.target)
    assert f"--out {tmp_path / 'aligned'}" in str(err.value)


def test_matcher_with_other_verdict_options_reads_the_codes(pair: Pair, pair_alignment: Path) -> None:
    from splatnlp.mechinterp.analysis import MatchOptions

    m = FeatureMatcher(pair.source, pair.target, alignment=pair_alignment, options=MatchOptions(related_correlation=0.5))
    assert m.index is None  # the alignment's parents were chosen at 0.3: not this matcher's verdict
    ref = FeatureMatcher(pair.source, pair.target, options=MatchOptions(related_correlation=0.5))
    for f in range(pair.source.n_features):
        a, b = _dump(ref.find_matches(f)), _dump(m.find_matches(f))
        a.pop("alignment"), b.pop("alignment")
        a["undefined"].pop("alignment", None), b["undefined"].pop("alignment", None)
        _assert_same(a, b)


def _forged(pair_alignment: Path, tmp_path: Path, edit) -> Path:
    """A copy of the pair index whose index.json ``edit`` changed."""
    forged = tmp_path / "forged"
    forged.mkdir()
    for file in (pair_alignment / INDEX_DIR).iterdir():
        (forged / file.name).write_bytes(file.read_bytes())
    meta = json.loads((forged / "index.json").read_text())
    edit(meta)
    (forged / "index.json").write_text(json.dumps(meta))
    return forged


def test_index_over_another_number_of_examples_is_refused(pair: Pair, pair_alignment: Path, tmp_path: Path) -> None:
    forged = _forged(pair_alignment, tmp_path, lambda m: m.update(n_examples=m["n_examples"] - 1))
    with pytest.raises(IndexMismatch, match=rf"sums {pair.source.n_examples - 1} examples; the contexts have {pair.source.n_examples}"):
        load_index(forged, pair.source, pair.target)


def test_index_arrays_of_the_wrong_shape_are_refused(pair: Pair, pair_alignment: Path, tmp_path: Path) -> None:
    forged = _forged(pair_alignment, tmp_path, lambda m: m["a"].update(n_features=m["a"]["n_features"] + 1))
    k_a, k_b = pair.source.n_features, pair.target.n_features
    with pytest.raises(IndexMismatch, match=rf"dot.npy' holds float32 \({k_a}, {k_b}\); index.json says float32 \({k_a + 1}, {k_b}\)"):
        load_index(forged, pair.source, pair.target)
