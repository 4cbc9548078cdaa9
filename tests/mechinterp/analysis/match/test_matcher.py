"""Tests of splatnlp/mechinterp/analysis/matcher.py.

Three layers: every field of every match against a dense brute force on a small planted pair of
contexts (``helpers.build_planted_pair``); undefined values and bad input; and recovery of the
planted structure of the tiny demo (real feature counts, 3,000 examples) with bars set below
measured figures.
"""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
import scipy.stats
from helpers import (
    N_SOURCE,
    N_TARGET,
    PAIR_D_MODEL,
    PAIR_EXAMPLES,
    SRC_COPIED,
    SRC_DEAD,
    SRC_FEW,
    SRC_PLAIN,
    SRC_RARE,
    SRC_SUM,
    SRC_TRACED,
    TGT_CONSTANT,
    TGT_COPY_A,
    TGT_COPY_B,
    TGT_DEAD,
    TGT_PART_A,
    TGT_PART_B,
    TGT_RARE,
    TGT_SUPERSET,
    TGT_TRACE,
    TGT_ZERO_DECODER,
    Pair,
    build_planted_pair,
    float_tol,
    random_codes,
    random_examples,
    random_sae,
)

from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
from splatnlp.mechinterp.analysis.match.matcher import SORT_KEYS
from splatnlp.mechinterp.analysis.metrics import kernels
from splatnlp.mechinterp.analysis.metrics import pairs as M
from splatnlp.mechinterp.analysis.metrics import verdicts as V
from splatnlp.mechinterp.context import MechInterpContext, build_context
from splatnlp.mechinterp.demo.build import load_ground_truth
from splatnlp.mechinterp.demo.world import GroundTruth

METRICS = SORT_KEYS[1:]
LIVE_SOURCES = (SRC_PLAIN, SRC_SUM, SRC_COPIED, SRC_TRACED, SRC_FEW)


# -- brute force --------------------------------------------------------------------------------
def brute_top_tokens(
    ctx: MechInterpContext, options: MatchOptions
) -> list[list[tuple[int, float]]]:
    """Top-token ids per feature by the documented rule, one token at a time: frequency ranks
    tokens by their count among the top examples; enrichment by the binomial z-score
    (count - k p) / sqrt(k p (1 - p)), keeping count >= 3 and z >= 3, where k is how many top
    examples the feature has; specials never; ties by id. Returns (token id, score) lists."""
    st, names = ctx.stats, ctx.token_names
    out = []
    for g in range(ctx.n_features):
        k = int((st.top_examples[g] >= 0).sum())
        ranked = []
        for t, name in enumerate(names):
            if name.startswith("<") and name.endswith(">"):
                continue
            c = float(st.top_token_counts[g, t])
            if options.top_token_method == "frequency":
                if c > 0:
                    ranked.append((-c, t))
            elif k > 0:
                p = min(max(float(st.token_frequency[t]), 1e-9), 1 - 1e-9)
                z = (c - k * p) / math.sqrt(k * p * (1 - p))
                if c >= 3 and z >= 3:
                    ranked.append((-z, t))
        out.append([(t, -score) for score, t in sorted(ranked)[: options.n_top_tokens]])
    return out


def brute_scores(pair: Pair, f: int, options: MatchOptions) -> dict[str, np.ndarray]:
    """Every metric of source feature ``f`` against every target, dense, NaN where undefined."""
    s, T = pair.source_codes[:, f], pair.target_codes
    n, n_t = len(s), T.shape[1]
    s_on, t_on = s > 0, T > 0
    count_s, count_t = int(s_on.sum()), t_on.sum(0)
    coactive = (s_on[:, None] & t_on).sum(0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        corr = np.array([np.corrcoef(s, T[:, t])[0, 1] for t in range(n_t)])
    ok = (count_t >= options.min_active) & (T.std(0) > 0)
    if count_s < options.min_active or s.std() == 0:
        ok[:] = False
    corr = np.where(ok, corr, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_ts = coactive / count_s if count_s >= options.min_active else np.full(n_t, np.nan)
        p_st = np.where(count_t >= options.min_active, coactive / count_t, np.nan)
        union = count_s + count_t - coactive
        cj = np.where(union > 0, coactive / union, np.nan)
    src_scored = brute_top_tokens(pair.source, options)[f]
    src_tokens = [t for t, _ in src_scored]
    tgt_tokens = [[t for t, _ in scored] for scored in brute_top_tokens(pair.target, options)]
    # Jaccard of the two sets; undefined when both are empty, or when the source is dead.
    a = set(src_tokens)
    tok = np.array(
        [len(a & set(b)) / len(a | set(b)) if (a | set(b)) else np.nan for b in tgt_tokens]
    )
    if count_s == 0:
        tok[:] = np.nan
    W_s = pair.source.sae.W_dec.numpy().astype(np.float64)[f]
    W_t = pair.target.sae.W_dec.numpy().astype(np.float64)
    norms = np.linalg.norm(W_s) * np.linalg.norm(W_t, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.where(norms > 0, W_t @ W_s / norms, np.nan)
    metric = {
        "activation_correlation": corr,
        "top_token_overlap": tok,
        "decoder_cosine": dec,
        "coactivation_jaccard": cj,
        "p_target_given_source": p_ts,
        "p_source_given_target": p_st,
    }
    combined = sum(w * metric[name] for name, w in options.weights.items())
    p_single = scipy.stats.norm.sf(corr * math.sqrt(n - 1))
    p_value = -np.expm1(n_t * np.log1p(-p_single))  # Sidak over all candidates
    related = np.nan_to_num(corr, nan=-2) >= options.related_correlation
    # The verdict rules written out (analysis/metrics/verdicts.py): the source here is the smaller
    # model (7 vs 40 features), so target t is a child when the source is t's best-correlated
    # source feature and they are related (r >= 0.3) or t is nested in it; a child is equivalent
    # when their decoders point the same way, their activations nearly agree, or their codes
    # correlate where both fire (Fisher-z lower bound, Bonferroni over the 40 larger features), or
    # it is near a multiple of the source where the source fires, more than the other children.
    S = pair.source_codes
    z = 1.96

    def nesting(t: int) -> float:
        """Wilson lower bound of t's activation-mass share inside the source, chance-corrected."""
        a, inside = T[:, t], S[:, f] > 0
        if (a > 0).sum() < options.min_active or a.sum() == 0:
            return float("nan")
        p, m, q = a[inside].sum() / a.sum(), a.sum() ** 2 / (a * a).sum(), inside.mean()
        lower = (p + z * z / (2 * m) - z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m))) / (1 + z * z / m)
        return (lower - q) / (1 - q)

    def coactive_lower(t: int) -> float:
        both = (T[:, t] > 0) & (S[:, f] > 0)
        if both.sum() < 4 or T[both, t].std() == 0 or S[both, f].std() == 0:
            return float("nan")
        r = np.corrcoef(T[both, t], S[both, f])[0, 1]
        z_fw = scipy.stats.norm.ppf(1 - 0.05 / n_t)
        return math.tanh(math.atanh(min(r, 1 - 1e-12)) - z_fw / math.sqrt(both.sum() - 3))

    def proportionality(t: int) -> float:
        """Squared cosine of t and the source on the source's active examples."""
        on = S[:, f] > 0
        num, den = np.dot(T[on, t], S[on, f]) ** 2, np.dot(S[:, f], S[:, f]) * np.dot(T[on, t], T[on, t])
        return float(num / den) if den > 0 else float("nan")

    child = np.zeros(n_t, bool)
    for t in range(n_t):
        if not np.isfinite(corr[t]):
            continue
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            back = np.array([np.corrcoef(T[:, t], S[:, j])[0, 1] for j in range(S.shape[1])])
        s_ok = ((S > 0).sum(0) >= options.min_active) & (S.std(0) > 0)
        back = np.where(s_ok, back, -np.inf)
        nested = corr[t] > 0 and nesting(t) >= options.nested_containment
        child[t] = int(np.argmax(back)) == f and (related[t] or nested)
    # The proportionality test compares a child with the median of the source's other children.
    prop = {t: proportionality(t) for t in np.flatnonzero(child)}

    def sibling_median(t: int) -> float:
        others = [v for u, v in prop.items() if u != t and np.isfinite(v)]
        return float(np.median(others)) if others else 0.0

    relation = []
    for t in range(n_t):
        if not np.isfinite(corr[t]):
            relation.append("unrelated")
        elif not child[t]:
            relation.append("partial" if related[t] else "unrelated")
        elif (
            (dec[t] >= options.equivalent_decoder_cosine and corr[t] >= 0.8)
            or corr[t] >= options.equivalent_correlation
            or (coactive_lower(t) >= options.equivalent_coactive_correlation and corr[t] >= 0.5)
            or (
                prop[t] >= V.EQUIVALENT_PROPORTIONALITY
                and prop[t] - sibling_median(t) >= V.EQUIVALENT_PROPORTIONALITY_GAP
                and corr[t] >= 0.5
            )
        ):
            relation.append("equivalent")
        else:
            relation.append("source_split_by_target")
    names = pair.source.token_names
    return {
        **metric,
        "combined_score": combined,
        "p_value": p_value,
        "relation": np.array(relation, dtype=object),
        "significant": related & (np.nan_to_num(p_value, nan=1.0) < options.alpha),
        "coactive": coactive,
        "shared": [[names[t] for t in src_tokens if t in set(b)] for b in tgt_tokens],
        "source_tokens": [names[t] for t in src_tokens],
        "source_token_scores": [score for _, score in src_scored],
        "target_tokens": [[names[t] for t in b] for b in tgt_tokens],
    }


def assert_value(
    actual: float | None, expected: float, *, rel: float = 1e-5, abs: float = 1e-6
) -> None:
    """``None`` exactly where the brute force is NaN, else close."""
    if np.isnan(expected):
        assert actual is None
    else:
        assert actual is not None and actual == pytest.approx(expected, rel=rel, abs=abs)


TOLERANCE = {
    # float64 throughout (float64 sums, the context's float64 means and standard deviations);
    # not a float32 result, so no float_tol (measured error 3e-15).
    "activation_correlation": dict(rel=1e-5, abs=1e-6),
    "top_token_overlap": dict(rel=1e-12, abs=0),
    # The matcher keeps unit decoder directions in float32: products over d_model.
    "decoder_cosine": dict(rel=0, abs=float_tol(np.float32, PAIR_D_MODEL)),
    "coactivation_jaccard": dict(rel=1e-12, abs=0),
    "p_target_given_source": dict(rel=1e-12, abs=0),
    "p_source_given_target": dict(rel=1e-12, abs=0),
    # Weighted sums: the float64 metrics as above, and decoder_cosine (the only float32 one)
    # weighted at most 0.5 (OPTIONS["weights"]).
    "combined_score": dict(rel=1e-5, abs=float_tol(np.float32, PAIR_D_MODEL, scale=0.5)),
    # A p-value far in the tail moves ~z * dz relative to its correlation's error.
    "p_value": dict(rel=1e-3, abs=1e-12),
}

OPTIONS = {
    "enrichment": MatchOptions(),
    "frequency": MatchOptions(top_token_method="frequency"),
    "weights": MatchOptions(weights={"decoder_cosine": 0.5, "coactivation_jaccard": 2.0}),
}


@pytest.fixture(scope="module")
def matchers(pair: Pair) -> dict[str, FeatureMatcher]:
    return {
        name: FeatureMatcher(pair.source, pair.target, options=opt) for name, opt in OPTIONS.items()
    }


# -- every field against the brute force --------------------------------------------------------
@pytest.mark.parametrize("options_name", list(OPTIONS))
@pytest.mark.parametrize("feature", LIVE_SOURCES + (SRC_DEAD, SRC_RARE))
def test_every_match_field_matches_brute_force(pair, matchers, options_name, feature) -> None:
    options = OPTIONS[options_name]
    report = matchers[options_name].find_matches(feature, n_top_matches=N_TARGET)
    expected = brute_scores(pair, feature, options)
    assert len(report.matches) == N_TARGET == report.n_candidates_tested
    assert sorted(m.target_feature for m in report.matches) == list(range(N_TARGET))
    assert [m.rank for m in report.matches] == list(range(1, N_TARGET + 1))
    for m in report.matches:
        t = m.target_feature
        for name in (*METRICS, "combined_score", "p_value"):
            assert_value(getattr(m, name), expected[name][t], **TOLERANCE[name])
            # Undefined means None with a reason, never a number; defined means no reason.
            assert (getattr(m, name) is None) == (name in m.undefined)
        assert m.relation == expected["relation"][t]
        assert m.significant == bool(expected["significant"][t])
        assert m.shared_top_tokens == expected["shared"][t]
        assert m.notes
    corr = expected["activation_correlation"]
    assert_value(report.best_correlation, np.nanmax(corr) if np.isfinite(corr).any() else np.nan)
    assert report.source_summary.n_active == int((pair.source_codes[:, feature] > 0).sum())
    assert [t.token for t in report.source_summary.top_tokens] == expected["source_tokens"]
    np.testing.assert_allclose(
        [t.score for t in report.source_summary.top_tokens],
        expected["source_token_scores"],
        rtol=1e-12,
    )


@pytest.mark.parametrize("feature", (SRC_DEAD, SRC_RARE, SRC_PLAIN, SRC_SUM))
def test_score_all_matches_brute_force(pair, matchers, feature) -> None:
    got = matchers["enrichment"].score_all(feature)
    expected = brute_scores(pair, feature, OPTIONS["enrichment"])
    for name in (*METRICS, "combined_score", "p_value"):
        assert got[name].shape == (N_TARGET,)
        np.testing.assert_allclose(
            got[name],
            expected[name],
            **{"rtol": TOLERANCE[name]["rel"], "atol": TOLERANCE[name]["abs"]},
        )
    assert got["relation"].tolist() == expected["relation"].tolist()


def test_planted_relations_are_found(pair, matchers, monkeypatch) -> None:
    """The brute force agrees with the matcher; this checks the planted pairs are what we think."""
    by_target = {
        m.target_feature: m
        for m in matchers["enrichment"].find_matches(SRC_COPIED, n_top_matches=N_TARGET).matches
    }
    assert by_target[TGT_COPY_A].relation == "equivalent" and by_target[TGT_COPY_A].significant
    assert by_target[TGT_COPY_A].activation_correlation == pytest.approx(1.0, abs=1e-6)  # float64
    report = matchers["enrichment"].find_matches(SRC_PLAIN)
    assert report.matches[0].target_feature == TGT_SUPERSET
    # The source model is the smaller one (7 vs 40 features) and the superset's best source is
    # SRC_PLAIN, so the pair is a parent pair. Where both fire the superset is 0.5 + SRC_PLAIN:
    # the magnitudes move together exactly (co-active correlation 1), so the pair is one feature;
    # it is also near a multiple of SRC_PLAIN there (proportionality). Without those two tests the
    # label follows the assignment (the larger model's feature is the part). The containments
    # stay in the report as evidence either way.
    assert report.matches[0].relation == "equivalent"
    assert report.matches[0].p_target_given_source == 1.0
    no_coactive = FeatureMatcher(pair.source, pair.target, options=MatchOptions(equivalent_coactive_correlation=1.01))
    assert no_coactive.find_matches(SRC_PLAIN).matches[0].relation == "equivalent"
    monkeypatch.setattr(V, "EQUIVALENT_PROPORTIONALITY", 1.01)
    no_coactive = FeatureMatcher(pair.source, pair.target, options=MatchOptions(equivalent_coactive_correlation=1.01))
    assert no_coactive.find_matches(SRC_PLAIN).matches[0].relation == "source_split_by_target"
    assert not report.is_unique
    # The enriched theme token is shared; the special <NULL> in every such build never counts.
    assert report.matches[0].shared_top_tokens
    assert "<NULL>" not in report.source_summary.model_dump_json()
    # Nearly identical activations (r >= 0.95) while the target also fires faintly elsewhere
    # (P(s|t) small): one feature whatever the (random) decoders say, so 'equivalent'.
    trace = matchers["enrichment"].compare_features(SRC_TRACED, TGT_TRACE)
    assert trace.activation_correlation >= 0.95 and trace.p_source_given_target < 0.6
    assert trace.decoder_cosine < 0.85
    assert trace.relation == "equivalent"
    top = matchers["enrichment"].find_matches(SRC_SUM).matches[:2]
    assert [m.target_feature for m in top] == [TGT_PART_A, TGT_PART_B]
    # Where PART_A fires, SRC_SUM is PART_A plus half of PART_B plus noise: their magnitudes move
    # together (co-active r 0.98 on 21 examples), so PART_A is the sum's equivalent part, while
    # PART_B (co-active r 0.83, bound below the cut) is only a part; the sum is still split.
    assert [m.relation for m in top] == ["equivalent", "source_split_by_target"]
    assert matchers["enrichment"].find_matches(SRC_SUM).verdict.label == "split_parent"
    assert no_coactive.find_matches(SRC_SUM).matches[0].relation == "source_split_by_target"


# -- ordering and candidate selection -----------------------------------------------------------
@pytest.mark.parametrize("sort_by", SORT_KEYS)
@pytest.mark.parametrize("feature", (SRC_DEAD, SRC_PLAIN, SRC_COPIED))
def test_sorting_descending_undefined_last_ties_by_id(matchers, sort_by, feature) -> None:
    matcher = matchers["enrichment"]
    key = matcher.score_all(feature)[sort_by]
    report = matcher.find_matches(feature, n_top_matches=N_TARGET, sort_by=sort_by)
    expected = sorted(
        range(N_TARGET), key=lambda t: (bool(np.isnan(key[t])), -np.nan_to_num(key[t]), t)
    )
    assert [m.target_feature for m in report.matches] == expected
    assert report.params["sort_by"] == sort_by


def test_default_sort_is_correlation_and_ties_go_by_id(matchers) -> None:
    report = matchers["enrichment"].find_matches(SRC_COPIED)
    assert report.params["sort_by"] == "activation_correlation"
    first, second = report.matches[:2]
    # Two identical targets: equal correlations, lower id first.
    assert first.activation_correlation == second.activation_correlation
    assert (first.target_feature, second.target_feature) == (TGT_COPY_A, TGT_COPY_B)
    assert len(report.matches) == 10


@pytest.mark.parametrize("sort_by", ("activation_correlation", "combined_score", "decoder_cosine"))
def test_n_candidates_is_an_exact_prefilter(matchers, sort_by) -> None:
    matcher = matchers["enrichment"]
    everything = matcher.find_matches(SRC_SUM, n_top_matches=N_TARGET, sort_by=sort_by)
    report = matcher.find_matches(SRC_SUM, n_candidates=5, n_top_matches=10, sort_by=sort_by)
    assert report.n_candidates_tested == 5
    assert report.candidate_selection.startswith("exact prefilter")
    assert (
        f"the 5 best of all {N_TARGET}" in report.candidate_selection
        and sort_by in report.candidate_selection
    )
    assert [m.target_feature for m in report.matches] == [
        m.target_feature for m in everything.matches[:5]
    ]
    assert report.matches == everything.matches[:5]
    wide = matcher.find_matches(SRC_SUM, n_candidates=10 * N_TARGET, n_top_matches=3)
    assert (
        wide.n_candidates_tested == N_TARGET
        and wide.candidate_selection == f"all {N_TARGET} full features"
    )


def test_combined_score_default_weights(pair, matchers) -> None:
    assert MatchOptions().weights == {"top_token_overlap": 0.4, "activation_correlation": 0.6}
    expected = brute_scores(pair, SRC_PLAIN, OPTIONS["frequency"])
    combined = 0.4 * expected["top_token_overlap"] + 0.6 * expected["activation_correlation"]
    got = matchers["frequency"].score_all(SRC_PLAIN)["combined_score"]
    np.testing.assert_allclose(got, combined, rtol=1e-5, atol=1e-6)  # float64: no float32 term
    assert np.isfinite(got).sum() >= N_TARGET - 3


# -- decomposition -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("feature", "related", "cap"),
    [
        (SRC_SUM, 0.3, 64),
        (SRC_SUM, 0.05, 64),
        (SRC_SUM, 0.05, 3),
        (SRC_TRACED, 0.05, 64),
        (SRC_PLAIN, 0.3, 64),
    ],
)
def test_decomposition_matches_dense_nnls(pair, feature, related, cap) -> None:
    options = MatchOptions(related_correlation=related, max_decomposition_members=cap)
    d = FeatureMatcher(pair.source, pair.target, options=options).find_decomposition(feature)
    brute = brute_scores(pair, feature, options)
    corr = brute["activation_correlation"]
    order = np.argsort(-np.nan_to_num(corr, nan=-2), kind="stable")
    # Members are the source's children (the source is the smaller model here): the targets
    # whose relation, by the brute-force verdict, makes the source their parent.
    children = np.isin(brute["relation"], ("source_split_by_target", "equivalent"))
    eligible = [int(t) for t in order if children[t]]
    members = eligible[:cap]
    assert TGT_COPY_A not in members  # collinear copies would make the weights non-unique
    assert d.n_considered == len(members) and len(members) >= 1
    assert sorted(m.feature for m in d.members) == sorted(members)
    s = pair.source_codes[:, feature]
    X = pair.target_codes[:, members]
    Xc, yc = X - X.mean(0), s - s.mean()
    weights, _ = scipy.optimize.nnls(Xc, yc)
    r2 = 1 - np.sum((yc - Xc @ weights) ** 2) / np.sum(yc**2)
    got = {m.feature: m.weight for m in d.members}
    # float64 NNLS (Gram matrix, Cholesky) against scipy's on the dense codes: conditioning, not
    # float32 rounding, sets these.
    np.testing.assert_allclose([got[t] for t in members], weights, rtol=1e-6, atol=1e-8)
    assert d.r_squared == pytest.approx(r2, abs=1e-7)
    s_on = s > 0
    assert d.coverage == pytest.approx((X[s_on] > 0).any(1).mean(), abs=1e-15)
    assert d.is_split == (len(members) >= 2)
    assert [m.weight for m in d.members] == sorted((m.weight for m in d.members), reverse=True)
    for m in d.members:
        assert m.activation_correlation == pytest.approx(corr[m.feature], rel=1e-5, abs=1e-6)
    if feature == SRC_SUM and related == 0.3:  # the planted sum is recovered almost exactly
        assert members == [TGT_PART_A, TGT_PART_B]
        assert got[TGT_PART_A] == pytest.approx(1.0, abs=0.02) and got[TGT_PART_B] == pytest.approx(
            0.5, abs=0.02
        )
        assert d.r_squared > 0.95 and d.is_split


def test_decomposition_in_report_and_when_nothing_is_related(pair, matchers) -> None:
    matcher = matchers["enrichment"]
    report = matcher.find_matches(SRC_SUM)
    assert report.decomposition == matcher.find_decomposition(SRC_SUM)
    assert matcher.find_matches(SRC_SUM, decompose=False).decomposition is None
    for feature in (SRC_DEAD, SRC_FEW):
        d = matcher.find_decomposition(feature)
        assert d.members == [] and d.r_squared is None and d.coverage is None and not d.is_split
        # Every null says why.
        assert d.undefined["r_squared"].startswith("no member: no full feature meets the rule")
        assert d.undefined["coverage"] == d.undefined["r_squared"]
    assert matcher.find_decomposition(SRC_SUM).undefined == {}


# -- compare_features ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "target"),
    [
        (SRC_PLAIN, TGT_SUPERSET),
        (SRC_SUM, TGT_PART_B),
        (SRC_COPIED, TGT_COPY_B),
        (SRC_DEAD, 0),
        (SRC_PLAIN, TGT_DEAD),
    ],
)
def test_compare_features_equals_the_match(pair, matchers, source, target) -> None:
    matcher = matchers["frequency"]
    comparison = matcher.compare_features(source, target)
    match = next(
        m
        for m in matcher.find_matches(source, n_top_matches=N_TARGET).matches
        if m.target_feature == target
    )
    for name in (*METRICS, "combined_score", "p_value", "relation", "notes", "undefined"):
        assert getattr(comparison, name) == getattr(match, name)
    assert comparison.jaccard_similarity == match.top_token_overlap
    expected = brute_scores(pair, source, OPTIONS["frequency"])
    assert comparison.n_coactive == expected["coactive"][target]
    mine, theirs = expected["source_tokens"], expected["target_tokens"][target]
    assert comparison.shared_tokens == match.shared_top_tokens == expected["shared"][target]
    assert sorted(comparison.shared_tokens + comparison.source_only_tokens) == sorted(mine)
    assert sorted(comparison.shared_tokens + comparison.target_only_tokens) == sorted(theirs)
    assert not set(comparison.source_only_tokens) & set(theirs)
    assert not set(comparison.target_only_tokens) & set(mine)
    assert (comparison.source_model, comparison.target_model) == ("ultra", "full")


def test_comparison_item_access(matchers) -> None:
    comparison = matchers["frequency"].compare_features(SRC_PLAIN, TGT_SUPERSET)
    assert comparison["jaccard_similarity"] == comparison.top_token_overlap > 0
    assert comparison["shared_tokens"] == comparison.shared_tokens
    assert "jaccard_similarity" in comparison.keys()
    with pytest.raises(KeyError, match=r"'bogus' is not a comparison field; fields: \["):
        comparison["bogus"]


# -- undefined values -----------------------------------------------------------------------------
def test_dead_source_has_no_activation_metrics(matchers) -> None:
    report = matchers["enrichment"].find_matches(SRC_DEAD, n_top_matches=N_TARGET)
    assert report.source_summary.dead and report.source_summary.n_active == 0
    for m in report.matches:
        assert m.activation_correlation is None and m.p_target_given_source is None
        assert m.combined_score is None and m.p_value is None and not m.significant
        assert m.undefined["activation_correlation"] == M.REASONS[M.SOURCE_DEAD]
        assert m.undefined["p_target_given_source"] == M.REASONS[M.SOURCE_DEAD]
        assert "activation_correlation" in m.undefined["combined_score"]
        assert m.notes.startswith("no correlation: the source feature is never active")
        assert m.relation == "unrelated"
    assert report.best_correlation is None
    assert report.is_unique and report.unique_reason == f"ultra {SRC_DEAD} is never active: no correlation is defined"
    assert report.verdict.label == "dead"
    assert any("never active" in w for w in report.warnings)


def test_dead_target_has_no_correlation(matchers) -> None:
    for source in LIVE_SOURCES:
        comparison = matchers["enrichment"].compare_features(source, TGT_DEAD)
        assert (
            comparison.activation_correlation is None and comparison.p_source_given_target is None
        )
        assert comparison.undefined["activation_correlation"] == M.REASONS[M.TARGET_DEAD]
        assert comparison.undefined["p_source_given_target"] == M.REASONS[M.TARGET_DEAD]
        # Defined: the target is never active where the source is.
        assert comparison.p_target_given_source == 0.0 and comparison.n_coactive == 0


def test_rare_features_have_no_correlation(matchers) -> None:
    matcher = matchers["enrichment"]
    report = matcher.find_matches(SRC_RARE, n_top_matches=N_TARGET)
    for m in report.matches:
        assert m.activation_correlation is None and m.p_target_given_source is None
        assert m.undefined["activation_correlation"] == M.REASONS[M.SOURCE_RARE]
    assert report.is_unique and report.best_correlation is None
    assert report.warnings == [
        f"source feature {SRC_RARE} is active on only 2 examples (< min_active=5); correlations are undefined"
    ]
    comparison = matcher.compare_features(SRC_PLAIN, TGT_RARE)
    assert comparison.activation_correlation is None and comparison.p_source_given_target is None
    assert comparison.undefined["activation_correlation"] == M.REASONS[M.TARGET_RARE]
    # With min_active lowered to 2 the same pairs are defined.
    relaxed = FeatureMatcher(
        matcher.source_ctx, matcher.target_ctx, options=MatchOptions(min_active=2)
    )
    assert relaxed.compare_features(SRC_PLAIN, TGT_RARE).activation_correlation is not None
    assert relaxed.find_matches(SRC_RARE).best_correlation is not None


def test_constant_target_and_zero_decoder_row(matchers) -> None:
    comparison = matchers["enrichment"].compare_features(SRC_PLAIN, TGT_CONSTANT)
    assert comparison.activation_correlation is None
    assert comparison.undefined["activation_correlation"] == M.REASONS[M.ZERO_VARIANCE]
    assert comparison.p_target_given_source == 1.0  # defined: the target is always active
    comparison = matchers["enrichment"].compare_features(SRC_PLAIN, TGT_ZERO_DECODER)
    assert comparison.decoder_cosine is None
    assert comparison.undefined["decoder_cosine"] == M.REASONS[M.ZERO_DECODER]
    assert comparison.activation_correlation is not None


def test_constant_code_with_rounded_variance_has_no_correlation(tmp_path: Path) -> None:
    """A constant code's one-pass variance rounds to ~1e-7 * mean at n=2000 instead of 0;
    correlations divided by it used to come out as |r| up to 0.2 instead of None."""
    n = 2000
    rng = np.random.default_rng(3)
    examples = random_examples(rng, n)
    src = random_codes(rng, n, 4, density=0.3)
    tgt = random_codes(rng, n, 20, density=0.3).toarray()
    tgt[:, :12] = rng.random(12).astype(np.float32)
    source = build_context(
        tmp_path / "ultra",
        sae=random_sae(1, n_features=4),
        examples=examples,
        codes=src,
        progress=False,
    )
    target = build_context(
        tmp_path / "full",
        sae=random_sae(2, n_features=20),
        examples=examples,
        codes=tgt,
        progress=False,
    )
    assert (target.stats.std[:12] > 0).any()  # the case this test is about does occur here
    matcher = FeatureMatcher(source, target)
    for f in range(4):
        corr = matcher.score_all(f)["activation_correlation"]
        assert np.isnan(corr[:12]).all() and np.isfinite(corr[12:]).all()
        assert (
            matcher.compare_features(f, 3).undefined["activation_correlation"]
            == M.REASONS[M.ZERO_VARIANCE]
        )


# -- the null -------------------------------------------------------------------------------------
def test_analytic_null(matchers) -> None:
    report = matchers["enrichment"].find_matches(SRC_PLAIN)
    assert report.null.method == "permutation_analytic"
    assert report.null.n_candidates == N_TARGET and report.null.null_max_correlation == []
    expected = math.sqrt(2 * math.log(N_TARGET) / (PAIR_EXAMPLES - 1))
    assert report.null.expected_max_correlation == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("feature", (SRC_PLAIN, SRC_SUM, SRC_FEW))
def test_empirical_null_matches_brute_force_shuffles(pair, feature) -> None:
    matcher = FeatureMatcher(
        pair.source, pair.target, options=MatchOptions(n_permutations=5, seed=7)
    )
    report = matcher.find_matches(feature, n_top_matches=N_TARGET)
    assert report.null.method == "permutation_empirical" and report.null.n_permutations == 5
    assert len(report.null.null_max_correlation) == 5
    # The documented shuffle: the source's values moved to random examples (seed 7).
    s, T = pair.source_codes[:, feature], pair.target_codes
    observed = brute_scores(pair, feature, MatchOptions())["activation_correlation"]
    rng = np.random.default_rng(7)
    rows = np.flatnonzero(s > 0)
    null_max = []
    for _ in range(5):
        shuffled = np.zeros_like(s)
        shuffled[rng.choice(len(s), size=len(rows), replace=False)] = s[rows]
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            r = np.array([np.corrcoef(shuffled, T[:, t])[0, 1] for t in range(N_TARGET)])
        null_max.append(np.nanmax(np.where(np.isnan(observed), np.nan, r)))
    # float64 correlations; the report rounds null_max_correlation to 6 decimals.
    np.testing.assert_allclose(report.null.null_max_correlation, null_max, atol=2e-6)
    assert report.null.expected_max_correlation == pytest.approx(np.mean(null_max), abs=2e-6)
    for m in report.matches:
        if m.activation_correlation is None:
            assert m.p_value is None
        else:
            assert 1 / 6 <= m.p_value <= 1
            beaten = sum(x >= m.activation_correlation for x in report.null.null_max_correlation)
            assert m.p_value == pytest.approx((1 + beaten) / 6)


def test_empirical_null_of_a_dead_source(pair) -> None:
    matcher = FeatureMatcher(pair.source, pair.target, options=MatchOptions(n_permutations=5))
    report = matcher.find_matches(SRC_DEAD)
    assert report.null.null_max_correlation == [None] * 5
    assert report.null.expected_max_correlation is None
    assert all(m.p_value is None for m in report.matches)


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("feature", (N_SOURCE, -1, 10**9))
def test_feature_out_of_range(matchers, feature) -> None:
    matcher = matchers["enrichment"]
    message = rf"feature {feature} is out of range for 'ultra' \(0\.\.{N_SOURCE - 1}\)"
    with pytest.raises(ValueError, match=message):
        matcher.find_matches(feature)
    with pytest.raises(ValueError, match=message):
        matcher.score_all(feature)
    with pytest.raises(ValueError, match=message):
        matcher.find_decomposition(feature)
    with pytest.raises(ValueError, match=message):
        matcher.compare_features(feature, 0)
    with pytest.raises(
        ValueError, match=rf"feature {N_TARGET} is out of range for 'full' \(0\.\.{N_TARGET - 1}\)"
    ):
        matcher.compare_features(0, N_TARGET)


@pytest.mark.parametrize("feature", (3.5, "7", True, None, np.float64(2.0)))
def test_feature_id_must_be_an_integer(matchers, feature) -> None:
    matcher = matchers["enrichment"]
    with pytest.raises(TypeError, match=r"feature id must be an integer, got"):
        matcher.find_matches(feature)
    with pytest.raises(TypeError, match=r"feature id must be an integer, got"):
        matcher.compare_features(SRC_PLAIN, feature)


def test_numpy_integer_ids_are_accepted(matchers) -> None:
    report = matchers["enrichment"].find_matches(np.int64(SRC_PLAIN), n_top_matches=np.int32(2))
    assert report.source_feature == SRC_PLAIN and type(report.source_feature) is int
    assert len(report.matches) == 2


@pytest.mark.parametrize("value", (0, -3, 2.5, True, "10"))
def test_n_top_matches_must_be_a_positive_integer(matchers, value) -> None:
    with pytest.raises(ValueError, match=r"n_top_matches must be an integer >= 1, got"):
        matchers["enrichment"].find_matches(SRC_PLAIN, n_top_matches=value)


@pytest.mark.parametrize("value", (0, -1, 2.5, False))
def test_n_candidates_must_be_a_positive_integer(matchers, value) -> None:
    with pytest.raises(ValueError, match=r"n_candidates must be None or an integer >= 1, got"):
        matchers["enrichment"].find_matches(SRC_PLAIN, n_candidates=value)


def test_unknown_sort_key(matchers) -> None:
    with pytest.raises(
        ValueError, match=r"sort_by 'bogus' is unknown; expected one of \['combined_score'"
    ):
        matchers["enrichment"].find_matches(SRC_PLAIN, sort_by="bogus")


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"weights name unknown metrics \['bogus'\]; allowed: "):
        MatchOptions(weights={"bogus": 1.0, "activation_correlation": 1.0})
    with pytest.raises(ValueError, match=r"weights name unknown metrics \['combined_score'\]"):
        MatchOptions(weights={"combined_score": 1.0})
    with pytest.raises(ValueError, match=r"top_token_method"):
        MatchOptions(top_token_method="bogus")
    with pytest.raises(ValueError, match=r"Extra inputs are not permitted"):
        MatchOptions(n_top_token=5)
    with pytest.raises(ValueError, match=r"alpha"):
        MatchOptions(alpha=1.5)
    with pytest.raises(ValueError, match=r"compiled[\s\S]*'auto'[\s\S]*input_value='sometimes'"):
        MatchOptions(compiled="sometimes")


def test_source_must_be_a_context(pair) -> None:
    with pytest.raises(TypeError, match=r"source_ctx must be a MechInterpContext, got str"):
        FeatureMatcher("ultra", pair.target)


def test_contexts_on_different_example_sets(pair, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    other = build_context(
        tmp_path / "full",
        sae=random_sae(9, d_model=8, n_features=N_TARGET),
        examples=random_examples(rng, PAIR_EXAMPLES),
        codes=random_codes(rng, PAIR_EXAMPLES, N_TARGET, density=0.1),
        progress=False,
    )
    with pytest.raises(
        ValueError, match=r"contexts 'ultra' and 'full' were computed on different example sets"
    ):
        FeatureMatcher(pair.source, other)
    with pytest.raises(ValueError, match=r"different example sets"):
        FeatureMatcher(other, pair.source)


def test_context_without_codes(tmp_path: Path) -> None:
    own = build_planted_pair(tmp_path, seed=1)
    shutil.rmtree(own.target.path / "codes")
    with pytest.raises(FileNotFoundError, match=r"context 'full' at '.*full' has no codes"):
        FeatureMatcher(own.source, own.target)
    with pytest.raises(FileNotFoundError, match=r"has no codes \(expected codes/csr_\*\.npy"):
        MechInterpContext(own.target.path)
    for f in (own.source.path / "codes").glob("csc_*.npy"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"context 'ultra' at '.*ultra' has no codes"):
        FeatureMatcher(own.source, own.source)


def test_default_target_needs_ultra_or_full(pair, tmp_path: Path) -> None:
    custom = build_context(
        tmp_path / "mine",
        sae=random_sae(4, d_model=8, n_features=N_TARGET),
        examples=pair.examples,
        codes=sp.csr_matrix(pair.target_codes),
        progress=False,
    )
    assert custom.model_type == "custom"
    with pytest.raises(ValueError, match=r"model_type 'custom'; pass target_ctx explicitly"):
        FeatureMatcher(custom)
    # Explicitly given, any pair over one example set works.
    assert FeatureMatcher(custom, pair.target).find_matches(12).matches[0].target_feature == 12


def test_default_target_is_the_sibling_folder(pair) -> None:
    matcher = FeatureMatcher(pair.source)
    assert matcher.target_ctx.path == pair.target.path and matcher.target_ctx.model_type == "full"
    assert FeatureMatcher(pair.target).target_ctx.path == pair.source.path
    back = matcher.reverse()
    assert back.source_ctx is matcher.target_ctx and back.target_ctx is matcher.source_ctx
    assert back.find_matches(TGT_SUPERSET).matches[0].target_feature == SRC_PLAIN


# -- ground truth on the tiny demo ----------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tiny_demo_dir: Path) -> tuple[MechInterpContext, MechInterpContext, GroundTruth]:
    return (
        MechInterpContext(tiny_demo_dir / "ultra"),
        MechInterpContext(tiny_demo_dir / "full"),
        load_ground_truth(tiny_demo_dir),
    )


@pytest.fixture(scope="module")
def ultra_to_full(demo) -> FeatureMatcher:
    return FeatureMatcher(demo[0], demo[1])


@pytest.fixture(scope="module")
def full_to_ultra(demo) -> FeatureMatcher:
    return FeatureMatcher(demo[1], demo[0])


def _sample(truth_classes: list[str], cls: str, size: int, seed: int) -> list[int]:
    ids = np.flatnonzero(np.array(truth_classes) == cls)
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(ids, size=min(size, len(ids)), replace=False))


@pytest.fixture(scope="module")
def child_reports(demo, ultra_to_full) -> dict[int, object]:
    """Default find_matches of 150 random Ultra children (seed 0)."""
    truth = demo[2]
    return {
        u: ultra_to_full.find_matches(u) for u in _sample(truth.ultra_class, "child", 150, seed=0)
    }


def test_top_match_of_a_child_is_its_planted_parent(demo, child_reports) -> None:
    truth = demo[2]
    hits = [r.matches[0].target_feature == truth.ultra_parent[u] for u, r in child_reports.items()]
    # Measured: 150/150 (1.000); over all 22,405 children 0.996.
    assert np.mean(hits) >= 0.95
    for r in child_reports.values():
        assert r.params["sort_by"] == "activation_correlation" and r.n_candidates_tested == 2048


def test_few_children_are_called_unique(child_reports) -> None:
    unique = [r.is_unique for r in child_reports.values()]
    # Measured: 7/150 (0.047); over all 22,405 children 0.027.
    assert np.mean(unique) <= 0.12


def test_split_parents_decompose_into_their_children(demo, full_to_ultra) -> None:
    truth = demo[2]
    children = truth.children()
    tp = n_members = n_children = 0
    for f in _sample(truth.full_class, "split", 150, seed=1):
        members = {m.feature for m in full_to_ultra.find_decomposition(f).members}
        kids = set(children[f])
        tp += len(members & kids)
        n_members += len(members)
        n_children += len(kids)
    recall, precision = tp / n_children, tp / n_members
    # Measured on these 150 parents (pooled): recall 0.971, precision 0.881; over all 1,721
    # split parents recall 0.972, precision 0.888. Most false members are the children of a
    # correlated parent (a few parents take in ~55 children of one frequent parent each).
    assert recall >= 0.90
    assert precision >= 0.80


def test_split_parent_top_match_is_a_child(demo, full_to_ultra) -> None:
    truth = demo[2]
    children = truth.children()
    sample = _sample(truth.full_class, "split", 60, seed=2)
    hits = [
        full_to_ultra.find_matches(f, decompose=False).matches[0].target_feature in children[f]
        for f in sample
    ]
    # Measured: 59/60 (0.983).
    assert np.mean(hits) >= 0.9


def test_equivalent_features_match_each_other_both_ways(demo, ultra_to_full, full_to_ultra) -> None:
    truth = demo[2]
    children = truth.children()
    sample = _sample(truth.full_class, "equivalent", 40, seed=3)
    forward = [full_to_ultra.find_matches(f, decompose=False).matches[0] for f in sample]
    backward = [
        ultra_to_full.find_matches(children[f][0], decompose=False).matches[0] for f in sample
    ]
    # Measured: the top match is the planted equivalent 40/40 both ways, labelled
    # 'equivalent' 38/40 both ways.
    assert (
        np.mean([m.target_feature == children[f][0] for m, f in zip(forward, sample, strict=True)])
        >= 0.9
    )
    assert np.mean([m.target_feature == f for m, f in zip(backward, sample, strict=True)]) >= 0.9
    assert np.mean([m.relation == "equivalent" for m in forward + backward]) >= 0.85


def test_novel_ultra_features_are_unique(demo, ultra_to_full) -> None:
    truth = demo[2]
    sample = _sample(truth.ultra_class, "novel", 150, seed=4)
    unique = [ultra_to_full.find_matches(u, decompose=False).is_unique for u in sample]
    # Measured: 139/150 (0.927); over all 1,229 novel features 0.957.
    assert np.mean(unique) >= 0.85


def test_full_only_features_are_unique(demo, full_to_ultra) -> None:
    truth = demo[2]
    only = _sample(truth.full_class, "full_only", 1000, seed=5)
    unique = [full_to_ultra.find_matches(f, decompose=False).is_unique for f in only]
    # Measured: 56/61 (0.918) of all full-only features.
    assert np.mean(unique) >= 0.8


def test_dead_demo_features_have_no_activation_metrics(demo, ultra_to_full, full_to_ultra) -> None:
    truth = demo[2]
    for matcher, classes in ((ultra_to_full, truth.ultra_class), (full_to_ultra, truth.full_class)):
        for f in _sample(classes, "dead", 3, seed=6):
            report = matcher.find_matches(f, n_top_matches=50)
            assert (
                report.source_summary.dead and report.is_unique and report.best_correlation is None
            )
            for m in report.matches:
                assert m.activation_correlation is None and m.p_target_given_source is None
                assert m.combined_score is None
                assert m.undefined["activation_correlation"] == M.REASONS[M.SOURCE_DEAD]
            assert any("never active" in w for w in report.warnings)
    dead_full = np.flatnonzero(np.array(truth.full_class) == "dead")
    child = next(iter(_sample(truth.ultra_class, "child", 1, seed=7)))
    corr = ultra_to_full.score_all(child)["activation_correlation"]
    assert np.isnan(corr[dead_full]).all()
    comparison = ultra_to_full.compare_features(child, int(dead_full[0]))
    assert comparison.activation_correlation is None
    assert comparison.undefined["activation_correlation"] == M.REASONS[M.TARGET_DEAD]


def test_default_target_on_the_demo(demo, tiny_demo_dir: Path) -> None:
    ultra, full, truth = demo
    to_full, to_ultra = FeatureMatcher(ultra), FeatureMatcher(full)
    assert (
        to_full.target_ctx.path == tiny_demo_dir / "full"
        and to_full.target_ctx.model_type == "full"
    )
    assert to_ultra.target_ctx.path == tiny_demo_dir / "ultra"
    child = _sample(truth.ultra_class, "child", 1, seed=8)[0]
    assert to_full.find_matches(child).matches[0].target_feature == truth.ultra_parent[child]


def _assert_close(a, b, rel: float, path: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], rel, f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, rel, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=rel), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")
def test_compiled_queries_answer_as_the_scipy_ones(demo) -> None:
    # MatchOptions(compiled=True): the query's sums and every candidate's reverse pass (its
    # correlations with the whole smaller model, which decide the parent) in the numba kernels,
    # the same float64 sums in another order; every field of the report, verdict included.
    ultra, full, truth = demo
    # Correlations from sums over the 3,000 examples; the rest derives from them in float64, and
    # the far tail of a p-value magnifies a correlation's relative error by about z**2 (~1e3).
    rel = float_tol(np.float64, ultra.n_examples, scale=1e3)
    for src, tgt, classes in ((ultra, full, truth.ultra_class), (full, ultra, truth.full_class)):
        plain = FeatureMatcher(src, tgt, options=MatchOptions(compiled=False))
        fast = FeatureMatcher(src, tgt, options=MatchOptions(compiled=True))
        assert not FeatureMatcher(src, tgt)._compiled  # "auto": too small to pay numba's load
        for cls in sorted(set(classes)):
            for f in _sample(classes, cls, 2, seed=3):
                a, b = plain.find_matches(f).model_dump(mode="json"), fast.find_matches(f).model_dump(mode="json")
                for d in (a, b):
                    d.pop("elapsed_ms")
                assert b["params"].pop("compiled") is True and a["params"].pop("compiled") is False
                _assert_close(a, b, rel, f"{src.model_type} {f} ({cls})")


def test_empirical_null_on_the_demo(demo) -> None:
    ultra, full, truth = demo
    matcher = FeatureMatcher(ultra, full, options=MatchOptions(n_permutations=5))
    child = _sample(truth.ultra_class, "child", 1, seed=9)[0]
    report = matcher.find_matches(child, decompose=False)
    assert report.null.method == "permutation_empirical"
    assert len(report.null.null_max_correlation) == 5
    assert all(0 < x < 0.3 for x in report.null.null_max_correlation)
    p_values = [m.p_value for m in report.matches]
    assert all(1 / 6 <= p <= 1 for p in p_values)
    assert report.matches[0].p_value == pytest.approx(1 / 6)  # the parent beats every shuffle


# -- the information test (stitching) in the verdict ----------------------------------------------
@pytest.fixture(scope="module")
def stitched(tmp_path_factory: pytest.TempPathFactory) -> tuple[MechInterpContext, MechInterpContext, np.ndarray]:
    """'full' (8 features) and 'ultra' (30) random SAEs encoding one set of activations."""
    import torch

    root = tmp_path_factory.mktemp("stitched")
    rng = np.random.default_rng(4)
    examples = random_examples(rng, 400)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    small = build_context(root / "full", sae=random_sae(1, n_features=8), examples=examples,
                          activations=torch.from_numpy(x), model_type="full", n_top_examples=20, progress=False)
    large = build_context(root / "ultra", sae=random_sae(2, n_features=30), examples=examples,
                          activations=torch.from_numpy(x), model_type="ultra", n_top_examples=20, progress=False)
    return small, large, x


def test_information_test_is_the_brute_force_stitching_gain(stitched) -> None:
    import torch

    small, large, x = stitched
    matcher = FeatureMatcher(large, small, options=MatchOptions(information_test=True))
    codes_small = torch.from_numpy(small.codes.csr.toarray())
    codes_large = large.codes.csr.toarray()
    recon = small.sae.decode(codes_small, x=torch.from_numpy(x)).numpy().astype(np.float64)
    checked = 0
    for u in range(large.n_features):
        info = matcher.find_matches(u, decompose=False).verdict.information_test
        rows = np.flatnonzero(codes_large[:, u] > 0)
        if not len(rows):
            assert not info.ran and info.reason == "the feature is never active"
            continue
        # Brute force: the smaller SAE's error on u's examples with and without u's decoded part.
        one = np.zeros((1, large.n_features), np.float32)
        one[0, u] = 1.0
        part = (large.sae.decode(torch.from_numpy(one)) - large.sae.decode(torch.zeros_like(torch.from_numpy(one)))).numpy()[0]
        before = ((x[rows] - recon[rows]) ** 2).sum()
        after = ((x[rows] - recon[rows] - np.outer(codes_large[rows, u], part)) ** 2).sum()
        assert info.ran and info.n_examples == len(rows) and not info.used_in_verdict
        tol = float_tol(np.float32, 16 * len(rows)) * before
        assert info.delta_sse == pytest.approx(after - before, abs=tol)
        assert info.gain == pytest.approx((before - after) / before, abs=tol / before)
        checked += 1
    assert checked >= 20


def test_information_test_says_why_it_did_not_run(stitched, tmp_path: Path) -> None:
    small, large, _ = stitched
    off = FeatureMatcher(large, small).find_matches(0)  # the default
    assert off.verdict.information_test.reason == (
        "not requested: pass MatchOptions(information_test=True) or --information-test"
    )
    on = MatchOptions(information_test=True)
    # The smaller side gets no information test: it asks what a larger-side latent adds.
    assert FeatureMatcher(small, large, options=on).find_matches(0).verdict.information_test is None
    # A smaller context without activations: the reason names it and how to get them.
    bare = build_context(tmp_path / "full", sae=small.sae, examples=small.examples,
                         codes=small.codes.csr, model_type="full", n_top_examples=20, progress=False)
    info = FeatureMatcher(large, bare, options=on).find_matches(3, decompose=False).verdict.information_test
    assert not info.ran and info.gain is None
    assert "'full'" in info.reason and "precomputed codes" in info.reason and "Rebuild" in info.reason


def test_find_matches_many_answers_each_and_reports_bad_ids_in_place(matchers) -> None:
    from splatnlp.mechinterp.analysis import FeatureError

    m = matchers["enrichment"]
    out = m.find_matches_many([SRC_PLAIN, 999, "x", SRC_SUM], n_top_matches=3, decompose=False)
    assert [type(r).__name__ for r in out] == ["MatchReport", "FeatureError", "FeatureError", "MatchReport"]
    assert isinstance(out[1], FeatureError) and "999 is out of range" in out[1].error and out[1].feature == 999
    assert out[2].error_type == "TypeError"
    for report, feature in ((out[0], SRC_PLAIN), (out[3], SRC_SUM)):
        one = m.find_matches(feature, n_top_matches=3, decompose=False)
        assert [x.target_feature for x in report.matches] == [x.target_feature for x in one.matches]
        assert report.verdict == one.verdict
    decs = m.find_decomposition_many([SRC_SUM, -1])
    assert decs[0].n_members == len(decs[0].members) >= 2 and isinstance(decs[1], FeatureError)


def test_compare_features_many_equals_one_pair_at_a_time(matchers) -> None:
    from splatnlp.mechinterp.analysis import FeatureError

    m = matchers["enrichment"]
    pairs = [(SRC_PLAIN, TGT_PART_A), (SRC_PLAIN, TGT_SUPERSET), (SRC_SUM, TGT_PART_A), (SRC_PLAIN, 0)]
    out = m.compare_features_many([*pairs, (SRC_PLAIN, 999), (1, 2, 3), "x"])
    for got, (s, t) in zip(out[: len(pairs)], pairs, strict=True):  # runs of one source share a scoring pass; not the numbers
        assert got == m.compare_features(s, t)
    bad = out[len(pairs):]
    assert all(isinstance(b, FeatureError) for b in bad)
    assert "999 is out of range" in bad[0].error and bad[0].feature == [SRC_PLAIN, 999]
    assert "is not a (source, target) pair" in bad[1].error and bad[2].feature == "x"


def test_without_the_verdict_is_unique_is_the_same(demo) -> None:
    """MatchOptions(verdict=False) skips report.verdict (for throughput) but not is_unique."""
    ultra, full, truth = demo
    fast = MatchOptions(verdict=False)
    ids = _sample(truth.ultra_class, "child", 10, seed=3) + _sample(truth.ultra_class, "novel", 10, seed=3)
    for source, target, features in ((ultra, full, ids), (full, ultra, _sample(truth.full_class, "full_only", 6, seed=3) + [361])):
        slow, quick = FeatureMatcher(source, target), FeatureMatcher(source, target, options=fast)
        for f in features:
            a, b = slow.find_matches(f, decompose=False), quick.find_matches(f, decompose=False)
            assert b.verdict is None and a.verdict is not None
            assert a.is_unique == b.is_unique, (source.model_type, f)
            assert (b.unique_reason is None) == (not b.is_unique)


def test_top_order_is_the_full_sorts_prefix() -> None:
    """The partition-based top-k equals a full lexsort's prefix: key descending, NaN last, ties
    by id, whatever k and however many ties straddle the cut."""
    from splatnlp.mechinterp.analysis.match.matcher import _top_order

    rng = np.random.default_rng(0)
    for trial in range(50):
        key = rng.integers(0, 5, size=200).astype(float)  # many ties
        key[rng.random(200) < 0.2] = np.nan
        full = np.lexsort((np.arange(200), -np.nan_to_num(key, nan=-np.inf)))
        for k in (1, 3, 17, 199, 200):
            np.testing.assert_array_equal(_top_order(key, k), full[:k], err_msg=f"trial {trial}, k {k}")


@pytest.mark.parametrize("feature", (SRC_DEAD, SRC_RARE, SRC_PLAIN, SRC_SUM))
def test_metrics_of_a_few_targets_equal_the_full_arrays(pair, matchers, feature, monkeypatch) -> None:
    """The per-target path of the scores (taken where a report reads a few of many targets)
    gives the numbers and reasons of the whole arrays, bit for bit, and so the same reports."""
    import splatnlp.mechinterp.analysis.match.matcher as matcher_module

    matcher = matchers["enrichment"]
    ids = np.array([0, 3, N_TARGET - 1, 3, 7])
    full = matcher._score_all(feature).metric
    monkeypatch.setattr(matcher_module, "_FULL_METRICS_BELOW", 0)
    few = matcher._score_all(feature).metric
    for name in full:
        values, reasons = few.at(name, ids)
        np.testing.assert_array_equal(values, full[name][0][ids])
        np.testing.assert_array_equal(reasons, full[name][1][ids])
        one_value, one_reason = few.at(name, 7)
        assert np.array_equal(one_value, full[name][0][7], equal_nan=True) and one_reason == full[name][1][7]
    report = matcher.find_matches(feature, n_top_matches=N_TARGET)
    whole = matcher.score_all(feature)
    for m in report.matches:  # each match's combined score is the whole array's entry, exactly
        expected = whole["combined_score"][m.target_feature]
        assert (m.combined_score is None and np.isnan(expected)) or m.combined_score == expected
    monkeypatch.setattr(matcher_module, "_FULL_METRICS_BELOW", 10**9)
    again = matcher.find_matches(feature, n_top_matches=N_TARGET)
    assert again.model_dump(exclude={"elapsed_ms"}) == report.model_dump(exclude={"elapsed_ms"})
