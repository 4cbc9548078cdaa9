"""Tests of splatnlp/mechinterp/analysis/tokens.py: both top-token definitions against a
per-element brute force, the ordering of top tokens and the set matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from splatnlp.mechinterp.analysis.metrics.tokens import (
    special_token_mask,
    token_scores,
    token_set_matrix,
    top_token_ids,
)

NAMES = ["<PAD>", "<NULL>", "swim_speed_up_3", "ink_saver_main_6", "stealth_jump", "weapon_id_10"]
N_FEATURES, N_TOKENS, K = 12, 40, 20


@pytest.fixture(scope="module")
def stats() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random (counts (F, T), n_top (F,), token_frequency (T,), special (T,)) with a feature
    without top examples, a token in no example and a token in every example."""
    rng = np.random.default_rng(0)
    n_top = rng.integers(1, K + 1, size=N_FEATURES)
    n_top[4] = 0
    freq = rng.uniform(0.01, 0.5, size=N_TOKENS)
    freq[6], freq[7] = 0.0, 1.0
    counts = np.zeros((N_FEATURES, N_TOKENS))
    for f in range(N_FEATURES):
        # Each feature has a few theme tokens it holds far more often than their frequency.
        theme = rng.choice(N_TOKENS, size=3, replace=False)
        p = freq.copy()
        p[theme] = 0.9
        counts[f] = rng.binomial(n_top[f], np.clip(p, 0, 1))
    counts[:, 0] = n_top  # a special token in every top example
    special = np.zeros(N_TOKENS, dtype=bool)
    special[[0, 1]] = True
    return counts, n_top, freq, special


def test_special_token_mask() -> None:
    np.testing.assert_array_equal(
        special_token_mask(NAMES), [True, True, False, False, False, False]
    )
    assert special_token_mask([]).shape == (0,)


def test_frequency_scores_are_counts(stats) -> None:
    counts, n_top, freq, special = stats
    scores = token_scores(counts, n_top, freq, special, method="frequency")
    for f in range(N_FEATURES):
        for t in range(N_TOKENS):
            if special[t] or counts[f, t] == 0:
                assert scores[f, t] == -np.inf
            else:
                assert scores[f, t] == counts[f, t]
    assert np.isfinite(scores[:, 2:]).any()


@pytest.mark.parametrize(("min_count", "min_z"), [(3, 3.0), (1, 0.0), (5, 6.0)])
def test_enrichment_scores_are_binomial_z(stats, min_count: int, min_z: float) -> None:
    counts, n_top, freq, special = stats
    scores = token_scores(
        counts, n_top, freq, special, method="enrichment", min_count=min_count, min_z=min_z
    )
    n_eligible = 0
    for f in range(N_FEATURES):
        for t in range(N_TOKENS):
            k, p = float(n_top[f]), min(max(float(freq[t]), 1e-9), 1 - 1e-9)
            c = counts[f, t]
            z = (c - k * p) / math.sqrt(k * p * (1 - p)) if k > 0 else math.nan
            if not special[t] and c >= min_count and z >= min_z:
                assert scores[f, t] == pytest.approx(z, rel=1e-12)
                n_eligible += 1
            else:
                assert scores[f, t] == -np.inf
    assert n_eligible > 0
    assert (scores[4] == -np.inf).all()  # no top examples: nothing is eligible


def test_enrichment_prefers_a_theme_token_to_a_rare_token_seen_twice() -> None:
    counts = np.array([[50.0, 2.0, 95.0]])
    freq = np.array([0.2, 0.001, 0.95])
    scores = token_scores(counts, np.array([100]), freq, np.zeros(3, bool), method="enrichment")
    assert np.isfinite(scores[0, 0]) and scores[0, 0] == pytest.approx(7.5)
    assert scores[0, 1] == -np.inf  # below min_count, however unlikely
    assert scores[0, 2] == -np.inf  # a token every build has is not enriched


def test_specials_never_count_even_when_frequent(stats) -> None:
    counts, n_top, freq, special = stats
    for method in ("frequency", "enrichment"):
        scores = token_scores(counts, n_top, freq, special, method=method)
        assert (scores[:, special] == -np.inf).all()
        assert all(0 not in ids and 1 not in ids for ids in top_token_ids(scores, 10))


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"top-token method 'bogus' is unknown; expected one of"):
        token_scores(
            np.zeros((1, 2)), np.ones(1), np.ones(2) / 2, np.zeros(2, bool), method="bogus"
        )


def test_top_token_ids_best_first_ties_by_id() -> None:
    scores = np.array(
        [
            [1.0, 5.0, 5.0, -np.inf, 2.0, 5.0],
            [-np.inf] * 6,
            [0.5, -np.inf, 0.5, 3.0, -np.inf, -np.inf],
        ]
    )
    out = top_token_ids(scores, 4)
    assert [ids.tolist() for ids in out] == [[1, 2, 5, 4], [], [3, 0, 2]]
    assert [ids.tolist() for ids in top_token_ids(scores, 100)] == [[1, 2, 5, 4, 0], [], [3, 0, 2]]
    assert [ids.tolist() for ids in top_token_ids(scores, 1)] == [[1], [], [3]]


def test_top_token_ids_match_a_sort(stats) -> None:
    counts, n_top, freq, special = stats
    scores = token_scores(counts, n_top, freq, special, method="frequency")
    for f, ids in enumerate(top_token_ids(scores, 10)):
        eligible = [t for t in range(N_TOKENS) if np.isfinite(scores[f, t])]
        expected = sorted(eligible, key=lambda t: (-scores[f, t], t))[:10]
        assert ids.tolist() == expected


def test_token_set_matrix() -> None:
    ids = [np.array([3, 0, 7]), np.zeros(0, np.int64), np.array([7])]
    mat = token_set_matrix(ids, 9)
    assert sp.issparse(mat) and mat.shape == (3, 9)
    dense = np.zeros((3, 9))
    dense[0, [3, 0, 7]] = 1
    dense[2, 7] = 1
    np.testing.assert_array_equal(mat.toarray(), dense)
    np.testing.assert_array_equal(np.diff(mat.indptr), [3, 0, 1])
    assert token_set_matrix([], 9).shape == (0, 9)


@pytest.mark.parametrize("method", ["enrichment", "frequency"])
def test_one_features_top_tokens_are_its_row_of_the_whole_table(pair, method) -> None:
    """FeatureArrays scores one feature's tokens without scoring them all (a query's source);
    the answer is the same row."""
    from splatnlp.mechinterp.analysis.metrics.features import FeatureArrays

    for ctx in (pair.source, pair.target):
        lazy = FeatureArrays(ctx, top_token_method=method, n_top_tokens=4)
        ones = [(lazy.scores_of(f), lazy.top_tokens_of(f)) for f in range(ctx.n_features)]
        assert "token_scores" not in lazy.__dict__  # nothing scored in bulk
        full = FeatureArrays(ctx, top_token_method=method, n_top_tokens=4)
        for f, (scores, tokens) in enumerate(ones):
            np.testing.assert_array_equal(scores, full.token_scores[f])
            np.testing.assert_array_equal(tokens, full.top_tokens[f])


@pytest.mark.parametrize("method", ["enrichment", "frequency"])
def test_top_tokens_scored_in_blocks_equal_the_whole_table(pair, method, monkeypatch) -> None:
    """Without cached scores, top tokens are scored in blocks of rows (a cold query's target);
    blocks that split the features unevenly give the ids of the whole (F, T) table."""
    from splatnlp.mechinterp.analysis.metrics import features
    from splatnlp.mechinterp.analysis.metrics.tokens import top_token_ids

    monkeypatch.setattr(features, "_TOKEN_BLOCK_ROWS", 3)
    for ctx in (pair.source, pair.target):
        blocked = features.FeatureArrays(ctx, top_token_method=method, n_top_tokens=4)
        got = blocked.top_tokens
        assert "token_scores" not in blocked.__dict__ and ctx.n_features % 3 != 0
        whole = top_token_ids(features.FeatureArrays(ctx, top_token_method=method).token_scores, 4)
        assert len(got) == ctx.n_features
        for mine, ref in zip(got, whole, strict=True):
            np.testing.assert_array_equal(mine, ref)
