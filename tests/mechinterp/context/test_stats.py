"""Tests of splatnlp/mechinterp/stats.py, against a brute-force reference on small dense data."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import float_tol, random_examples

from splatnlp.mechinterp.context import stats as stats_module
from splatnlp.mechinterp.context.stats import FeatureStats, compute_feature_stats

N_EXAMPLES, N_FEATURES, K = 80, 12, 6


def _brute_force(codes: np.ndarray, tokens: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every statistic by its definition, one feature at a time, in float64."""
    n, n_features = codes.shape
    out: dict[str, list] = {f.name: [] for f in fields(FeatureStats)}
    for f in range(n_features):
        col = codes[:, f].astype(np.float64)
        active = np.flatnonzero(col > 0)
        out["frequency"].append(len(active) / n)
        out["mean"].append(col.mean())
        out["std"].append(col.std())
        out["mean_active"].append(col[active].mean() if len(active) else np.nan)
        out["max"].append(col.max())
        ranked = sorted(active.tolist(), key=lambda r: (-col[r], r))[:k]
        out["top_examples"].append(ranked + [-1] * (k - len(ranked)))
        out["top_values"].append([col[r] for r in ranked] + [0.0] * (k - len(ranked)))
        out["top_token_counts"].append(tokens[ranked].sum(axis=0))
        out["token_activation"].append((col[:, None] * tokens).sum(axis=0))
    result = {name: np.asarray(v) for name, v in out.items() if name != "token_frequency"}
    result["token_frequency"] = tokens.mean(axis=0)
    return result


def _data(seed: int) -> tuple[np.ndarray, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    # Values from a small set so that ties are common, including at the top-k boundary.
    codes = rng.choice(np.array([0.5, 1.0, 1.5, 2.0], np.float32), size=(N_EXAMPLES, N_FEATURES))
    density = rng.uniform(0.02, 0.6, size=N_FEATURES)
    codes[rng.random((N_EXAMPLES, N_FEATURES)) >= density] = 0.0
    codes[:, 3] = 0.0  # dead
    codes[:, 4] = 0.0
    codes[[10, 3], 4] = [1.0, 1.0]  # fewer active examples than k, tied
    tokens = random_examples(rng, N_EXAMPLES).token_matrix()
    return codes, tokens


@pytest.mark.parametrize("block_nnz", [None, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed: int, block_nnz: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if block_nnz is not None:  # many column blocks (and columns larger than a block) in the sums
        monkeypatch.setattr(stats_module, "_STATS_BLOCK_NNZ", block_nnz)
    codes, tokens = _data(seed)
    stats = compute_feature_stats(sp.csc_matrix(codes), tokens, n_top_examples=K)
    expected = _brute_force(codes, tokens.toarray().astype(np.float64), K)
    var = codes.astype(np.float64).var(0)
    # The one-pass std, from E[x^2] - mean^2, loses E[x^2] / var(x) of float64's precision.
    cancellation = float(np.max((codes.astype(np.float64) ** 2).mean(0)[var > 0] / var[var > 0]))
    for f in fields(FeatureStats):
        got = getattr(stats, f.name)
        if f.name == "top_examples":
            np.testing.assert_array_equal(got, expected[f.name], err_msg=f.name)
        else:
            # Sums over the examples, in the field's own dtype (float64 mean and std, float32
            # the rest). Codes are non-negative, so the terms' magnitudes sum to the value: a
            # relative tolerance (a zero must be exact).
            scale = cancellation if f.name == "std" else 1.0
            rtol = float_tol(got.dtype, N_EXAMPLES, scale)
            np.testing.assert_allclose(got, expected[f.name], rtol=rtol, atol=0, err_msg=f.name)
    assert stats.top_examples.dtype == np.int32
    assert stats.n_features == N_FEATURES and stats.n_top_examples == K


def test_top_examples_break_ties_by_row() -> None:
    # Ten examples share the largest value; the k kept are the lowest rows, in row order.
    col = np.zeros(30, np.float32)
    tied = np.array([27, 3, 14, 8, 21, 0, 11, 25, 5, 17])
    col[tied] = 2.0
    col[[1, 2]] = 1.0
    stats = compute_feature_stats(
        sp.csc_matrix(col[:, None]), sp.csr_matrix((30, 1), dtype=np.float32), n_top_examples=4
    )
    np.testing.assert_array_equal(stats.top_examples[0], [0, 3, 5, 8])
    np.testing.assert_array_equal(stats.top_values[0], [2.0] * 4)


def test_dead_features() -> None:
    codes, tokens = _data(0)
    stats = compute_feature_stats(sp.csc_matrix(codes), tokens, n_top_examples=K)
    assert stats.frequency[3] == 0 and stats.mean[3] == 0 and stats.max[3] == 0
    assert np.isnan(stats.mean_active[3])
    np.testing.assert_array_equal(stats.top_examples[3], [-1] * K)
    np.testing.assert_array_equal(stats.top_token_counts[3], 0)
    assert stats.n_top(3) == 0
    np.testing.assert_array_equal(stats.top_examples[4], [3, 10] + [-1] * (K - 2))
    assert stats.n_top(4) == 2
    assert not np.isnan(stats.mean_active[np.arange(N_FEATURES) != 3]).any()


def test_token_matrix_rows_must_match() -> None:
    codes, tokens = _data(0)
    with pytest.raises(
        ValueError, match=rf"token matrix has {N_EXAMPLES - 1} rows; codes have {N_EXAMPLES}"
    ):
        compute_feature_stats(sp.csc_matrix(codes), tokens[:-1])


def test_save_load(tmp_path: Path) -> None:
    codes, tokens = _data(1)
    stats = compute_feature_stats(sp.csc_matrix(codes), tokens, n_top_examples=K)
    stats.save(tmp_path)
    n_tokens = tokens.shape[1]
    loaded = FeatureStats.load(tmp_path, n_features=N_FEATURES, n_tokens=n_tokens)
    for f in fields(FeatureStats):
        np.testing.assert_array_equal(getattr(loaded, f.name), getattr(stats, f.name))
        assert getattr(loaded, f.name).dtype == getattr(stats, f.name).dtype


def test_load_checks_shapes(tmp_path: Path) -> None:
    codes, tokens = _data(1)
    compute_feature_stats(sp.csc_matrix(codes), tokens, n_top_examples=K).save(tmp_path)
    n_tokens = tokens.shape[1]
    with pytest.raises(
        ValueError,
        match=rf"'.*frequency\.npy' has shape \({N_FEATURES},\); expected \({N_FEATURES + 1}, \.\.\.\)",
    ):
        FeatureStats.load(tmp_path, n_features=N_FEATURES + 1, n_tokens=n_tokens)
    with pytest.raises(
        ValueError,
        match=rf"'.*top_token_counts\.npy' has shape \({N_FEATURES}, {n_tokens}\); "
        rf"expected \({N_FEATURES}, {n_tokens + 1}\)",
    ):
        FeatureStats.load(tmp_path, n_features=N_FEATURES, n_tokens=n_tokens + 1)
    np.save(tmp_path / "token_frequency.npy", np.zeros(n_tokens + 2, np.float32))
    with pytest.raises(
        ValueError, match=rf"'.*token_frequency\.npy' has shape \({n_tokens + 2},\)"
    ):
        FeatureStats.load(tmp_path, n_features=N_FEATURES, n_tokens=n_tokens)
    (tmp_path / "max.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file '.*max\.npy'"):
        FeatureStats.load(tmp_path, n_features=N_FEATURES, n_tokens=n_tokens)
