"""Tests of splatnlp/mechinterp/analysis/align/dictionary.py.

Every (K_a, K_b) matrix against a dense numpy brute force on the small planted pair, for several
chunk sizes; agreement with FeatureMatcher.score_all; Hungarian recovery of a column
permutation; bad input; and recovery of the tiny demo's planted classes (bars below measured
figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import (
    PAIR_D_MODEL,
    PAIR_EXAMPLES,
    SRC_COPIED,
    SRC_PLAIN,
    SRC_SUM,
    SRC_TRACED,
    Pair,
    float_tol,
    random_examples,
    random_sae,
)

from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions, linear_cka
from splatnlp.mechinterp.analysis.align import dictionary as alignment
from splatnlp.mechinterp.analysis.align.dictionary import (
    BLOCK_ARRAYS,
    METRICS,
    NULL_ARRAYS,
    SIDE_ARRAYS,
    AlignmentReport,
    AlignOptions,
    align_contexts,
    load_tables,
    pair_sums_streamed,
    save_tables,
)
from splatnlp.mechinterp.analysis.metrics import kernels
from splatnlp.mechinterp.analysis.metrics.features import FeatureArrays
from splatnlp.mechinterp.context import build_context
from splatnlp.mechinterp.demo.build import load_ground_truth

MIN_ACTIVE = 5
CHEAP = dict(n_null_features=8, n_null_directions=16, keep_matrices=True)


def brute_force(pair: Pair, n_examples: int | None = None) -> dict[str, np.ndarray]:
    """Every metric from dense float64 codes (the first ``n_examples`` rows), with the
    documented NaN rules."""
    A, B = pair.source_codes[:n_examples], pair.target_codes[:n_examples]
    ca, cb = (A > 0).sum(0), (B > 0).sum(0)
    co = (A > 0).astype(float).T @ (B > 0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.corrcoef(A.T, B.T)[: A.shape[1], A.shape[1] :]
    bad_a = (ca < MIN_ACTIVE) | (np.ptp(A, 0) == 0)
    bad_b = (cb < MIN_ACTIVE) | (np.ptp(B, 0) == 0)
    r[bad_a, :] = np.nan
    r[:, bad_b] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        p_ba = np.where((ca >= MIN_ACTIVE)[:, None], co / ca[:, None], np.nan)
        p_ab = np.where((cb >= MIN_ACTIVE)[None, :], co / cb[None, :], np.nan)
        union = ca[:, None] + cb[None, :] - co
        cj = np.where(union > 0, co / union, np.nan)
    Wa = pair.source.sae.W_dec.numpy().astype(np.float64)
    Wb = pair.target.sae.W_dec.numpy().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = (Wa / np.linalg.norm(Wa, axis=1, keepdims=True)) @ (Wb / np.linalg.norm(Wb, axis=1, keepdims=True)).T
    opt = MatchOptions()
    sets_a = [set(t.tolist()) for t in FeatureArrays(pair.source, top_token_method=opt.top_token_method, n_top_tokens=opt.n_top_tokens).top_tokens]
    sets_b = [set(t.tolist()) for t in FeatureArrays(pair.target, top_token_method=opt.top_token_method, n_top_tokens=opt.n_top_tokens).top_tokens]
    tok = np.full((len(sets_a), len(sets_b)), np.nan)
    for i, s in enumerate(sets_a):
        for j, t in enumerate(sets_b):
            if ca[i] > 0 and cb[j] > 0 and (s | t):
                tok[i, j] = len(s & t) / len(s | t)
    return {
        "activation_correlation": r,
        "coactivation_jaccard": cj,
        "p_target_given_source": p_ba,
        "p_source_given_target": p_ab,
        "decoder_cosine": dec,
        "top_token_overlap": tok,
    }


@pytest.fixture(scope="module")
def reference(pair: Pair) -> dict[str, np.ndarray]:
    return brute_force(pair)


def metric_tolerances(pair: Pair, chunk_size: int, n_examples: int | None = None) -> dict[str, float]:
    """float_tol of each float32 matrix against the float64 brute force. Correlation: float32
    products over ``chunk_size`` rows per chunk (chunks summed in float64), whose terms' scale is
    E[ab] / (std_a std_b), the correlation plus mean_a mean_b / (std_a std_b) (at most 1.19 on the
    planted pair). Decoder cosine: float32 unit rows over d_model. The others: exact counts
    divided once, then stored as float32 (one rounding)."""
    A, B = pair.source_codes[:n_examples], pair.target_codes[:n_examples]
    n = len(A)
    sa, sb = A.std(0), B.std(0)
    live = np.outer(((A > 0).sum(0) >= MIN_ACTIVE) & (sa > 0), ((B > 0).sum(0) >= MIN_ACTIVE) & (sb > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = float(np.max(((A.T @ B) / n / np.outer(sa, sb))[live]))
    one_rounding = float_tol(np.float32, 1)
    return {
        "activation_correlation": float_tol(np.float32, min(chunk_size, n), scale=max(scale, 1.0)),
        "coactivation_jaccard": one_rounding,
        "p_target_given_source": one_rounding,
        "p_source_given_target": one_rounding,
        "decoder_cosine": float_tol(np.float32, PAIR_D_MODEL),
        "top_token_overlap": one_rounding,
    }


# -- brute force ----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 7, PAIR_EXAMPLES])
@pytest.mark.parametrize("product", ["numba", "torch", "scipy"])
def test_pair_sums_match_dense(pair: Pair, chunk_size: int, product: str) -> None:
    if product == "numba" and not kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    A, B = pair.source_codes, pair.target_codes
    for a, b in ((pair.source, pair.target), (pair.target, pair.source)):
        dot, co = pair_sums_streamed(a.codes.csr, b.codes.csr, chunk_size=chunk_size, product=product)
        dA, dB = (A, B) if a is pair.source else (B, A)
        # torch/scipy: float32 products over chunk_size rows, chunks summed in float64; numba:
        # exact products of float32 codes summed in float64 over every row. Codes are
        # non-negative, so the terms' magnitudes sum to the value itself: a relative tolerance.
        rtol = (
            float_tol(np.float64, PAIR_EXAMPLES)
            if product == "numba"
            else float_tol(np.float32, min(chunk_size, PAIR_EXAMPLES))
        )
        np.testing.assert_allclose(dot, dA.T @ dB, rtol=rtol, atol=0)
        np.testing.assert_array_equal(co, (dA > 0).astype(float).T @ (dB > 0).astype(float))


@pytest.mark.parametrize("chunk_size", [1, 7, PAIR_EXAMPLES])
def test_matrices_match_brute_force(pair: Pair, reference, chunk_size: int) -> None:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(chunk_size=chunk_size, **CHEAP))
    assert set(tables.matrices) == set(METRICS)
    tol = metric_tolerances(pair, chunk_size)
    for name in METRICS:
        got, want = tables.matrices[name], reference[name]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol[name], equal_nan=True, err_msg=name)
    # Best matches: the row / column maxima of the same matrices.
    for name in METRICS:
        m = np.nan_to_num(tables.matrices[name].astype(np.float64), nan=-np.inf, neginf=-np.inf)
        for side, axis in ((tables.a, 1), (tables.b, 0)):
            best = m.max(axis)
            idx = side[f"best_{name}_index"]
            np.testing.assert_array_equal(idx == -1, ~np.isfinite(best))
            # float64 scores against the float32 copies of the same matrices: one rounding.
            np.testing.assert_allclose(
                side[f"best_{name}_score"][idx >= 0], best[idx >= 0], rtol=0, atol=float_tol(np.float32, 1)
            )
            hit = np.take_along_axis(m, np.expand_dims(np.maximum(idx, 0), axis), axis).squeeze(axis)
            np.testing.assert_array_equal(hit[idx >= 0], best[idx >= 0])


@pytest.mark.parametrize("n_examples", [37, PAIR_EXAMPLES - 1])
def test_first_examples_match_brute_force(pair: Pair, n_examples: int) -> None:
    """``n_examples`` aligns the first rows only, with moments and counts over those rows."""
    expected = brute_force(pair, n_examples)
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(n_examples=n_examples, **CHEAP))
    assert tables.report.n_examples == n_examples and tables.report.n_examples_context == PAIR_EXAMPLES
    assert f"first {n_examples} of {PAIR_EXAMPLES}" in tables.report.warnings[0]
    tol = metric_tolerances(pair, AlignOptions().chunk_size, n_examples)
    for name in METRICS:
        np.testing.assert_allclose(
            tables.matrices[name], expected[name], rtol=0, atol=tol[name], equal_nan=True, err_msg=name
        )
    np.testing.assert_array_equal(tables.a["count"], (pair.source_codes[:n_examples] > 0).sum(0))
    # More than the contexts hold means all of them.
    everything = align_contexts(pair.source, pair.target, options=AlignOptions(n_examples=10**6, **CHEAP))
    assert everything.report.n_examples == PAIR_EXAMPLES
    # The pair is built from codes: the only warning is the information test's, which needs the
    # smaller context's activations.
    assert [w for w in everything.report.warnings if "information test" not in w] == []


@pytest.mark.parametrize("n", [0, 1, 37, PAIR_EXAMPLES])
def test_first_rows_are_views_of_the_codes(pair: Pair, n: int) -> None:
    from splatnlp.mechinterp.analysis.align.dictionary import _first_rows

    csr = pair.source.codes.csr
    view = _first_rows(csr, n)
    assert view.shape == (n, csr.shape[1])
    assert (view != csr[:n]).nnz == 0 and view.nnz == csr[:n].nnz
    if view.nnz:  # no copy of the (memory-mapped) arrays
        assert np.shares_memory(view.data, csr.data) and np.shares_memory(view.indices, csr.indices)


def test_agrees_with_feature_matcher(pair: Pair) -> None:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(chunk_size=64, **CHEAP))
    matcher = FeatureMatcher(pair.source, pair.target)
    live_targets = pair.target_codes.any(0)
    # The matcher's metrics are float64 from float64 sums (its decoder cosine float32 over d_model).
    tol = metric_tolerances(pair, 64)
    for feature in (SRC_PLAIN, SRC_SUM, SRC_COPIED, SRC_TRACED):
        scores = matcher.score_all(feature)
        for name in METRICS:
            got = tables.matrices[name][feature]
            want = scores[name]  # one name for each containment in both
            if name == "top_token_overlap":
                # The matcher scores a dead target's empty token set as 0 overlap; here it is NaN.
                got, want = got[live_targets], want[live_targets]
            np.testing.assert_allclose(
                got, want, rtol=0, atol=tol[name], equal_nan=True, err_msg=f"{name} of {feature}"
            )


def test_report_round_trip_and_tables(pair: Pair, tmp_path: Path) -> None:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP))
    report = tables.report
    assert AlignmentReport.model_validate_json(report.model_dump_json()) == report
    assert report.a_fingerprint == report.b_fingerprint == pair.source.fingerprint
    assert report.larger_side == "b" and report.hungarian is None and "hungarian_max_ratio" in report.hungarian_skipped
    assert sum(report.class_counts_a.values()) == pair.source.n_features
    assert sum(report.class_counts_b.values()) == pair.target.n_features
    save_tables(tables, tmp_path / "aligned")
    loaded = load_tables(tmp_path / "aligned")
    assert loaded.report == report and loaded.matrices is None
    for side, again in ((tables.a, loaded.a), (tables.b, loaded.b)):
        for key in SIDE_ARRAYS:
            np.testing.assert_array_equal(side[key], again[key], err_msg=key)
    (tmp_path / "aligned" / "b" / "parent.npy").unlink()
    with pytest.raises(FileNotFoundError, match="parent.npy"):
        load_tables(tmp_path / "aligned")


def test_heatmap_block_and_null_samples(pair: Pair, tmp_path: Path) -> None:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP))
    block, r = tables.block, tables.matrices["activation_correlation"]
    rows, cols, col_row = block["rows"], block["cols"], block["col_row"]
    n_assigned, parent, parent_score = tables.a["n_assigned"], tables.b["parent"], tables.b["parent_score"]
    assert len(rows) == min(alignment.HEATMAP_ROWS, int((n_assigned >= 1).sum())) > 0
    assert (np.diff(n_assigned[rows]) <= 0).all()  # most assigned first
    np.testing.assert_array_equal(parent[cols], rows[col_row])  # each column under its parent
    assert (np.diff(col_row) >= 0).all()
    for position in range(len(rows)):
        group = cols[col_row == position]
        assert len(group) == min(alignment.HEATMAP_CHILDREN, n_assigned[rows[position]])
        assert (np.diff(parent_score[group]) <= 0).all()
    np.testing.assert_allclose(block["values"], r[np.ix_(rows, cols)], equal_nan=True)
    # Null samples: one best value per null feature / direction, summarized by the quantiles.
    null, summary = tables.null, tables.report.null
    codes = pair.source_codes
    live = ((codes > 0).sum(0) >= MIN_ACTIVE) & (np.ptp(codes, 0) > 0)
    assert len(null["correlation_a"]) == summary.n_null_features_a == min(8, int(live.sum()))
    assert len(null["decoder_b"]) == 16
    assert summary.correlation_max_b["0.95"] == pytest.approx(np.quantile(null["correlation_b"], 0.95))
    save_tables(tables, tmp_path / "t")
    loaded = load_tables(tmp_path / "t")
    for group, names in ((tables.block, BLOCK_ARRAYS), (tables.null, NULL_ARRAYS)):
        for name in names:
            again = loaded.block if group is tables.block else loaded.null
            np.testing.assert_array_equal(group[name], again[name], err_msg=name)
    np.save(tmp_path / "t" / "block" / "col_row.npy", col_row[:-1])
    with pytest.raises(ValueError, match="heatmap block .* inconsistent"):
        load_tables(tmp_path / "t")
    assert loaded.side(pair.target.model_type)[0] == "b" and loaded.side(pair.source.name)[0] == "a"
    with pytest.raises(KeyError, match="'medium' is not in this alignment"):
        loaded.side("medium")


def test_heatmap_block_when_a_is_the_larger_side(pair: Pair) -> None:
    """The block is always smaller side x larger side, whichever argument is larger."""
    tables = align_contexts(pair.target, pair.source, options=AlignOptions(**CHEAP))
    assert tables.report.larger_side == "a"
    block, r = tables.block, tables.matrices["activation_correlation"]  # (K_target, K_source)
    np.testing.assert_array_equal(tables.a["parent"][block["cols"]], block["rows"][block["col_row"]])
    np.testing.assert_allclose(block["values"], r[np.ix_(block["cols"], block["rows"])].T, equal_nan=True)


def test_cka_option_is_linear_cka_of_the_codes(pair: Pair) -> None:
    opt = AlignOptions(cka=True, cka_batch_size=64, n_cka_permutations=8, n_examples=250, **CHEAP)
    report = align_contexts(pair.source, pair.target, options=opt).report
    direct = linear_cka(
        pair.source.codes.csr[:250], pair.target.codes.csr[:250], batch_size=64, n_permutations=8, seed=opt.seed
    )
    assert report.cka.value == pytest.approx(direct.value, abs=1e-12)
    assert report.cka.null_quantiles == pytest.approx(direct.null_quantiles, abs=1e-12)
    assert "cka" in report.timings_s
    assert AlignmentReport.model_validate_json(report.model_dump_json()) == report
    assert align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP)).report.cka is None


def test_parent_assignment_and_classes(pair: Pair) -> None:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP))
    r = tables.matrices["activation_correlation"].astype(np.float64)
    parent = tables.b["parent"]
    for j in range(pair.target.n_features):
        col = r[:, j]
        if np.isfinite(col).any() and np.nanmax(col) >= 0.3:
            assert parent[j] == int(np.nanargmax(col))
        else:
            assert parent[j] == -1
    n_assigned = tables.a["n_assigned"]
    np.testing.assert_array_equal(n_assigned, np.bincount(parent[parent >= 0], minlength=pair.source.n_features))
    labels = tables.a["class_label"]
    assert labels[0] == "dead"  # helpers.SRC_DEAD
    assert labels[SRC_COPIED] == "split_parent"  # two exact copies in the target (TGT_COPY_A/B)


# -- Hungarian ------------------------------------------------------------------------------------
def test_hungarian_recovers_permutation(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n, k = 200, 12
    codes = rng.random((n, k)).astype(np.float32)
    codes[rng.random((n, k)) >= 0.3] = 0.0
    perm = rng.permutation(k)
    examples = random_examples(rng, n)
    a = build_context(tmp_path / "a", sae=random_sae(1, n_features=k), examples=examples, codes=sp.csr_matrix(codes), progress=False)
    b = build_context(tmp_path / "b", sae=random_sae(2, n_features=k), examples=examples, codes=sp.csr_matrix(codes[:, perm]), progress=False)
    tables = align_contexts(a, b, options=AlignOptions(**CHEAP))
    np.testing.assert_array_equal(tables.b["hungarian"], perm)
    np.testing.assert_array_equal(tables.a["hungarian"][perm], np.arange(k))
    # Correlations of identical columns: float32 products over n rows (one chunk), at the terms'
    # scale E[a^2] / var(a).
    c64 = codes.astype(np.float64)
    atol = float_tol(np.float32, n, scale=float(np.max((c64**2).mean(0) / c64.var(0))))
    np.testing.assert_allclose(tables.a["hungarian_score"], 1.0, rtol=0, atol=atol)
    assert tables.report.hungarian.n_related == k
    assert tables.report.class_counts_a["equivalent"] == k and tables.report.class_counts_b["equivalent"] == k


# -- bad input ------------------------------------------------------------------------------------
def test_different_example_sets(pair: Pair, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    other = build_context(
        tmp_path / "other", sae=random_sae(4, n_features=5), examples=random_examples(rng, 50),
        codes=sp.csr_matrix(rng.random((50, 5)).astype(np.float32)), progress=False,
    )
    with pytest.raises(ValueError, match="different example sets") as info:
        align_contexts(pair.source, other)
    assert pair.source.fingerprint in str(info.value) and other.fingerprint in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"chunk_size": 0},
        {"chunk_size": -3},
        {"related_correlation": 1.5},
        {"hungarian_max_ratio": 0.5},
        {"n_null_features": -1},
        {"product": "cuda"},
        {"top_token_method": "magic"},
        {"no_such_option": 1},
        {"n_examples": 3},
    ],
)
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        AlignOptions(**bad)


def test_bad_arguments(pair: Pair) -> None:
    for size in (0, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
            pair_sums_streamed(pair.source.codes.csr, pair.target.codes.csr, chunk_size=size)
    with pytest.raises(TypeError, match="options must be AlignOptions"):
        align_contexts(pair.source, pair.target, options={"chunk_size": 5})
    with pytest.raises(TypeError, match="b must be a MechInterpContext"):
        align_contexts(pair.source, str(pair.target.path))
    with pytest.raises(ValueError, match="rows"):
        pair_sums_streamed(pair.source.codes.csr, pair.target.codes.csr[:10])
    with pytest.raises(ValueError, match="unknown device 'gpu7'"):
        align_contexts(pair.source, pair.target, options=AlignOptions(device="gpu7"))
    with pytest.raises(ValueError, match=r"product 'blas' is unknown; expected one of \['auto', 'numba'"):
        pair_sums_streamed(pair.source.codes.csr, pair.target.codes.csr, product="blas")


def test_auto_product_is_the_compiled_kernel_when_numba_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from splatnlp.mechinterp.analysis.metrics.streamed import resolve_product

    assert resolve_product("auto") == ("numba" if kernels.AVAILABLE else "torch")
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert resolve_product("auto") == "torch"
    with pytest.raises(ValueError, match="product 'numba' needs numba installed"):
        resolve_product("numba")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(pair: Pair) -> None:
    cpu = align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP))
    gpu = align_contexts(pair.source, pair.target, options=AlignOptions(device="cuda", **CHEAP))
    tol = metric_tolerances(pair, AlignOptions().chunk_size)  # both float32, each within tol of float64
    for name in METRICS:
        np.testing.assert_allclose(
            gpu.matrices[name], cpu.matrices[name], rtol=0, atol=tol[name], equal_nan=True, err_msg=name
        )
    for key in SIDE_ARRAYS:
        np.testing.assert_array_equal(gpu.b[key], cpu.b[key], err_msg=key)


# -- planted ground truth of the tiny demo -------------------------------------------------------
def test_tiny_demo_ground_truth(tiny_demo_dir: Path, tiny_alignment) -> None:
    tables = tiny_alignment
    truth = load_ground_truth(tiny_demo_dir)
    fc, uc = np.array(truth.full_class), np.array(truth.ultra_class)
    planted_parent = np.array([-1 if p is None else p for p in truth.ultra_parent])
    A, B = tables.a["class_label"], tables.b["class_label"]

    def precision_recall(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
        tp = (pred & true).sum()
        return tp / max(pred.sum(), 1), tp / max(true.sum(), 1)

    report = tables.report
    assert report.larger_side == "b" and report.hungarian is None
    # Measured (seed 0): split parents P 0.999 R 0.974; children P 0.998 R 0.972; novel P 0.661
    # R 0.957 (true children whose best parent correlation is < 0.3 land in novel); equivalents
    # P 1.0 R 0.990 on both sides; dead exact.
    p, r = precision_recall(A == "split_parent", fc == "split")
    assert p >= 0.97 and r >= 0.93, (p, r)
    p, r = precision_recall(B == "split_child", uc == "child")
    assert p >= 0.97 and r >= 0.93, (p, r)
    p, r = precision_recall(B == "novel", uc == "novel")
    assert p >= 0.55 and r >= 0.90, (p, r)
    for side, classes in ((A, fc), (B, uc)):
        p, r = precision_recall(side == "equivalent", classes == "equivalent")
        assert p >= 0.95 and r >= 0.95, (p, r)
        np.testing.assert_array_equal(side == "dead", classes == "dead")
    # Children assigned to their planted parent: measured 0.971; equivalents 1.0.
    kids = uc == "child"
    assert (tables.b["parent"][kids] == planted_parent[kids]).mean() >= 0.93
    eq = uc == "equivalent"
    assert (tables.b["parent"][eq] == planted_parent[eq]).mean() >= 0.97
    # Chance levels sit well below the related threshold (measured q95 0.21 / 0.17, decoder
    # q99 0.22 / 0.19) and below the real mean best correlation (0.62 / 0.58).
    corr = report.metrics["activation_correlation"]
    for q in (report.null.correlation_max_a, report.null.correlation_max_b):
        assert q["0.95"] < 0.3
    for q in (report.null.decoder_max_a, report.null.decoder_max_b):
        assert q["0.99"] < 0.3
    assert corr.mean_max_a > 0.5 and corr.mean_max_b > 0.5
