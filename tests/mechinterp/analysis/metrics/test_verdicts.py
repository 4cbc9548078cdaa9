"""The shared verdict rules, and that the matcher, its decomposition and the alignment give the
same verdict for every pair (they all call analysis/metrics/verdicts.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import Pair, float_tol

from splatnlp.mechinterp.analysis import AlignOptions, FeatureMatcher, align_contexts
from splatnlp.mechinterp.analysis.metrics import verdicts as V


def test_assign_parents_is_the_best_correlation_above_the_cut_or_nested() -> None:
    corr = np.array([[0.1, 0.5, 0.4], [0.2, np.nan, 0.29], [np.nan, np.nan, np.nan], [0.6, 0.6, 0.1], [0.1, -0.05, 0.0]])
    parent, score = V.assign_parents(corr, 0.3)
    assert parent.tolist() == [1, -1, -1, 0, -1]  # ties go to the lower index
    np.testing.assert_array_equal(score, [0.5, np.nan, np.nan, 0.6, np.nan])
    assert V.assign_parents(np.zeros((2, 0)))[0].tolist() == [-1, -1]
    # Nested in its best candidate: a parent below the correlation cut (rows 1 and 4), but never
    # for an undefined correlation (row 2), and nesting in a lower-ranked candidate does not count.
    nesting = np.array([0.9, 0.6, 0.9, 0.1, 0.5])
    parent, score = V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.5)
    assert parent.tolist() == [1, 2, -1, 0, 0]
    np.testing.assert_array_equal(score, [0.5, 0.29, np.nan, 0.6, 0.1])
    assert V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.95)[0].tolist() == [1, -1, -1, 0, -1]


def test_nesting_bound_is_the_chance_corrected_wilson_bound_of_the_mass_share() -> None:
    # A child with 40 unit activations, all inside a parent that fires on 10 % of 1,000 examples.
    lower = V.containment_lower_bound(40, 40)
    assert V.nesting_lower_bound(40, 40, 40, 100, 1000) == pytest.approx((lower - 0.1) / 0.9)
    # Inside at the parent's own rate is chance: the bound is below zero.
    assert V.nesting_lower_bound(4, 40, 40, 100, 1000) < 0
    # Strong activations inside, weak ones scattered outside: the mass share (50 / 53) at the
    # effective sample size 53^2 / 250.3 (Kish), not the count share (10 / 40).
    share, n_eff = 50 / 53, 53**2 / 250.3
    want = (V.containment_lower_bound(share * n_eff, n_eff) - 0.1) / 0.9
    assert V.nesting_lower_bound(10 * 5.0, 10 * 5.0 + 30 * 0.1, 10 * 25.0 + 30 * 0.01, 100, 1000) == pytest.approx(want)
    assert want > 0.5 > (V.containment_lower_bound(10, 40) - 0.1) / 0.9
    assert np.isnan(V.nesting_lower_bound(0, 0, 0, 100, 1000))  # never fires
    assert np.isnan(V.nesting_lower_bound(5, 5, 5, 1000, 1000))  # a parent that always fires


def test_pair_relations_cover_every_label() -> None:
    corr = np.array([0.85, 0.5, 0.97, 0.4, 0.1, np.nan, 0.79])
    dec = np.array([0.9, 0.2, 0.1, 0.95, 0.99, 0.99, 0.99])
    parent = np.array([True, True, True, False, True, True, True])
    small = V.pair_relations(corr, dec, parent, source_is_larger=False)
    assert small.tolist() == [
        "equivalent",  # parent pair, decoders agree and the codes follow each other
        "source_split_by_target",  # parent pair: the target is the source's child
        "equivalent",  # parent pair, nearly identical activations
        "partial",  # related, not a parent pair, whatever the decoders
        # A parent pair below the cut (nested) whose decoders agree, and one just under
        # DECODER_MIN_CORRELATION: children that absorbed the parent's direction.
        "source_split_by_target",
        "unrelated",  # undefined correlation
        "source_split_by_target",
    ]
    assert V.equivalent_by(corr, dec).tolist() == ["decoder_cosine", "", "correlation", "", "", "", ""]
    assert V.equivalent_by([V.DECODER_MIN_CORRELATION], [0.85]).tolist() == ["decoder_cosine"]
    large = V.pair_relations(corr, dec, parent, source_is_larger=True)
    assert large[1] == "source_part_of_target" and large[0] == "equivalent"


def test_larger_side_is_decided_the_same_way_from_both_ends() -> None:
    a, b = (2048, "full", "full"), (24576, "ultra", "ultra")
    assert V.larger_is_first(b, a) and not V.larger_is_first(a, b)
    same_a, same_b = (10, "custom", "x"), (10, "custom", "y")
    assert V.larger_is_first(same_b, same_a) != V.larger_is_first(same_a, same_b)


@pytest.fixture(scope="module")
def aligned(pair: Pair):
    return align_contexts(pair.source, pair.target, options=AlignOptions(n_null_features=8, n_null_directions=16))


def test_matcher_decomposition_and_alignment_agree_on_every_pair(pair: Pair, aligned) -> None:
    """The planted pair: source 'ultra' has 7 features, target 'full' 40, so the target is the
    larger model and each target feature's parent is a source feature."""
    small_side, large_side = (aligned.a, aligned.b) if aligned.report.larger_side == "b" else (aligned.b, aligned.a)
    parent = large_side["parent"]
    from_small = FeatureMatcher(pair.source, pair.target)
    from_large = FeatureMatcher(pair.target, pair.source)
    n_checked = 0
    for s in range(pair.source.n_features):
        relation = from_small.score_all(s)["relation"]
        children = {m.feature for m in from_small.find_decomposition(s).members}
        for t in range(pair.target.n_features):
            is_parent_pair = parent[t] == s
            assert (relation[t] in ("source_split_by_target", "equivalent")) == is_parent_pair, (s, t)
            assert (t in children) == is_parent_pair, (s, t)
            back = from_large.score_all(t)["relation"][s]
            assert (back in ("source_part_of_target", "equivalent")) == is_parent_pair, (s, t)
            assert (back == "equivalent") == (relation[t] == "equivalent"), (s, t)
            if is_parent_pair:
                want = "equivalent" if relation[t] == "equivalent" else ("split_child" if small_side["n_assigned"][s] >= 2 else "partial")
                assert large_side["class_label"][t] == want, (s, t)
                n_checked += 1
    assert n_checked >= 3  # the planted copies, parts and superset are parent pairs


# -- confidence -------------------------------------------------------------------------------------
def test_confidence_is_nesting_for_parents_and_distance_from_the_cut_for_novel() -> None:
    labels = ["split_child", "partial", "equivalent", "split_child", "novel", "novel", "novel", "dead"]
    best = [0.9, 0.25, 0.95, 0.6, 0.05, 0.2, np.nan, np.nan]
    nesting = [0.8, 0.95, np.nan, 0.79, 0.9, 0.0, np.nan, np.nan]
    got = V.confidence(labels, best, nesting).tolist()
    # A parent's confidence is its nesting (NaN is not sure), novel's the best correlation
    # (undefined: nothing correlates at all); the cuts are inclusive for parents, exclusive for novel.
    assert got == ["high", "high", "low", "low", "high", "low", "high", ""]


def test_a_parent_with_a_rival_is_never_high_confidence() -> None:
    labels = ["split_child", "split_child", "split_child", "novel"]
    best = [0.6, 0.6, 0.6, 0.1]
    nesting = [0.9, 0.9, 0.9, 0.1]
    rival = [0.3, 0.3 - 1e-9, np.nan, 0.9]  # at the ratio, just under it, none; novel has no parent
    assert V.confidence(labels, best, nesting, rival).tolist() == ["low", "high", "high", "high"]
    assert V.confidence(labels, best, nesting).tolist() == ["high", "high", "high", "high"]
    assert V.has_rival([0.6, 0.6, np.nan], [0.3, np.nan, 0.5]).tolist() == [True, False, False]


def test_rivals_against_brute_force() -> None:
    rng = np.random.default_rng(4)
    k, k_small = 60, 7
    corr = rng.uniform(-0.3, 0.9, (k, k_small))
    corr[rng.random((k, k_small)) < 0.1] = np.nan  # undefined pairs are never rivals
    small = rng.uniform(-0.45, 0.45, (k_small, k_small))
    small[rng.random((k_small, k_small)) < 0.1] = np.nan  # an undefined relation counts as unrelated
    parent = rng.integers(-1, k_small, k)
    rival, score = V.rivals(corr, parent, small[np.maximum(parent, 0)])
    for u in range(k):
        p = parent[u]
        options = [] if p < 0 else [
            (corr[u, f], f) for f in range(k_small)
            if f != p and not abs(small[p, f]) >= V.RIVAL_UNRELATED and np.isfinite(corr[u, f]) and corr[u, f] > 0
        ]  # fmt: skip
        if options:
            want_score, want = max(options)
            assert (rival[u], score[u]) == (want, want_score), u
        else:
            assert rival[u] == -1 and np.isnan(score[u]), u
    assert (rival >= 0).sum() >= 20 and (rival < 0).sum() >= 10  # both outcomes occur
    with pytest.raises(ValueError, match=r"corr \(60, 7\), parent \(59,\) and parent_corr"):
        V.rivals(corr, parent[:59], small[np.maximum(parent, 0)])


def test_matcher_and_alignment_agree_on_rivals(tiny_demo_dir, tiny_alignment) -> None:
    """The matcher, from the codes alone, gives every sampled Ultra parent verdict the alignment's
    rival, rival score and confidence; the alignment's rival is the brute-force one from the
    dense codes (Pearson by numpy)."""
    from splatnlp.mechinterp.analysis.align.tables import larger_side_confidence
    from splatnlp.mechinterp.context import MechInterpContext

    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    _, tab = tiny_alignment.side("ultra")
    flagged = V.has_rival(tab["parent_score"], tab["rival_score"])
    plain = (tab["parent"] >= 0) & ~flagged
    assert flagged.sum() >= 20 and plain.sum() >= 1000  # both occur on the tiny demo
    rng = np.random.default_rng(5)
    ids = np.concatenate([rng.choice(np.flatnonzero(flagged), 5, replace=False), rng.choice(np.flatnonzero(plain), 5, replace=False)])
    f_dense = full.codes.csc.toarray().astype(np.float64)
    u_dense = ultra.codes.csc[:, ids].toarray().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        full_r = np.corrcoef(f_dense.T)
        cross = np.corrcoef(u_dense.T, f_dense.T)[: len(ids), len(ids):]
    rare_ok = (f_dense != 0).sum(0) >= AlignOptions().min_active
    # float64 sums over the examples, three ways (streamed, a reverse pass, numpy): a correlation's
    # rounding from its reductions over n examples, scaled for the moments it is built from.
    tol = float_tol(np.float64, full.n_examples, scale=2.0)
    levels = larger_side_confidence(tab)
    from_large = FeatureMatcher(ultra, full)
    for i, u in enumerate(ids.tolist()):
        p = int(tab["parent"][u])
        # Features under min_active have no correlation in the alignment (nor in the matcher).
        unrelated = ~(np.abs(full_r[p]) >= V.RIVAL_UNRELATED) & np.isfinite(cross[i]) & (cross[i] > 0) & rare_ok
        unrelated[p] = False
        want = int(np.argmax(np.where(unrelated, cross[i], -np.inf)))
        assert tab["rival"][u] == want and tab["rival_score"][u] == pytest.approx(cross[i, want], abs=tol), u
        v = from_large.find_matches(u, decompose=False).verdict
        assert v.rival == tab["rival"][u] and v.rival_score == pytest.approx(tab["rival_score"][u], abs=tol), u
        assert v.confidence == levels[u], u
        assert ("rival" in v.rule) == bool(flagged[u]), v.rule
        if flagged[u]:
            assert v.confidence == "low"
    # A Full feature's decomposition carries each member's rival, the same as its verdict's.
    from_small = FeatureMatcher(full, ultra)
    for u in ids[:3].tolist():
        members = {m.feature: m for m in from_small.find_decomposition(int(tab["parent"][u])).members}
        m = members[u]
        assert m.rival == tab["rival"][u] and m.rival_score == pytest.approx(tab["rival_score"][u], abs=tol), u
    # From the larger side, members are the other way round: no rival.
    assert all(m.rival is None for m in from_large.find_decomposition(int(ids[0])).members)


def test_confidence_rejects_unknown_classes_and_shapes() -> None:
    with pytest.raises(ValueError, match="unknown larger-side class"):
        V.confidence(["split_parent"], [0.5], [0.5])
    with pytest.raises(ValueError, match="one shape"):
        V.confidence(["novel", "novel"], [0.1], [0.1, 0.2])


# -- feature classes and the containment bound ---------------------------------------------------
def test_feature_classes_follow_the_assignment() -> None:
    small = V.small_side_classes([3, 1, 1, 0, 0, 2], [0, 1, 0, 0, 0, 2], [9, 9, 9, 9, 0, 9])
    assert small.tolist() == ["split_parent", "equivalent", "partial", "unique", "dead", "split_parent"]
    large = V.large_side_classes(
        [True, True, True, True, False, False], [False, False, True, True, False, False], [3, 1, 3, 1, 7, 0], [5, 5, 5, 5, 5, 0]
    )
    # An equivalent pair stays equivalent beside siblings; no parent is novel; never active is dead.
    assert large.tolist() == ["split_child", "partial", "equivalent", "equivalent", "novel", "dead"]
    assert set(small) <= set(V.SMALL_CLASSES) and set(large) <= set(V.LARGE_CLASSES)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (63, 100), (7, 2000), (1, 1)])
def test_containment_lower_bound_inverts_the_score_test(k: int, n: int) -> None:
    """Wilson's bound is the smallest p0 the one-sample score test at z = 1.96 does not reject:
    found here by brute force on a fine grid."""
    grid = np.linspace(0, 1, 2_000_001)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(k / n - grid) / np.sqrt(grid * (1 - grid) / n)
    accepted = grid[(z <= 1.96) | (grid == k / n)]
    assert V.containment_lower_bound(k, n) == pytest.approx(accepted.min(), abs=2e-6)
    assert V.containment_lower_bound(k, n) <= k / n
    assert np.isnan(V.containment_lower_bound(0, 0))


# -- the matcher's verdict is the alignment's class ------------------------------------------------
def _check_verdicts(small_ctx, large_ctx, tables, small_ids, large_ids) -> int:
    """Every verdict of the two matchers against the alignment's classes, parents, children and
    confidence (``features.csv``'s rows)."""
    from splatnlp.mechinterp.analysis.align.tables import feature_rows

    small_key, small_tab = tables.side(small_ctx.model_type)
    _, large_tab = tables.side(large_ctx.model_type)
    level = {r["feature"]: r["confidence"] for r in feature_rows(tables) if r["model"] == large_ctx.model_type}
    from_small, from_large = FeatureMatcher(small_ctx, large_ctx), FeatureMatcher(large_ctx, small_ctx)
    parent = large_tab["parent"]
    checked = 0
    for s in small_ids:
        report = from_small.find_matches(int(s), decompose=False)
        v = report.verdict
        assert v.side == "smaller" and v.label == small_tab["class_label"][s], s
        assert v.confidence is None and "confidence" in v.undefined, s
        assert sorted(v.children) == np.flatnonzero(parent == s).tolist(), s
        assert report.is_unique == (v.label in ("unique", "dead")), s
        checked += 1
    for u in large_ids:
        report = from_large.find_matches(int(u), decompose=False)
        v = report.verdict
        assert v.side == "larger" and v.label == large_tab["class_label"][u], u
        assert (v.parent if v.parent is not None else -1) == parent[u], u
        assert v.confidence == level[int(u)], u
        assert (v.confidence is None) == (v.label == "dead"), u
        if v.parent is not None:
            assert v.parent_n_children == int(small_tab["n_assigned"][v.parent]), u
            assert 0 <= v.parent_containment_lower <= v.parent_containment <= 1
        assert report.is_unique == (v.label in ("novel", "dead")), u
        checked += 1
    return checked


def test_matcher_verdicts_are_the_alignment_classes_on_the_planted_pair(pair: Pair, aligned) -> None:
    # The target ('full', 40 features) is the larger side here.
    n = _check_verdicts(pair.source, pair.target, aligned, range(pair.source.n_features), range(pair.target.n_features))
    assert n == 47


def test_matcher_verdicts_are_the_alignment_classes_on_the_tiny_demo(tiny_demo_dir, tiny_alignment) -> None:
    from splatnlp.mechinterp.context import MechInterpContext

    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    rng = np.random.default_rng(0)
    small_ids, large_ids = [], []
    _, small_tab = tiny_alignment.side("full")
    _, large_tab = tiny_alignment.side("ultra")
    # A few of every class on both sides (the classes a planted world has).
    for tab, out in ((small_tab, small_ids), (large_tab, large_ids)):
        labels = tab["class_label"].astype(str)
        for cls in sorted(set(labels)):
            ids = np.flatnonzero(labels == cls)
            out.extend(rng.choice(ids, size=min(4, len(ids)), replace=False).tolist())
    assert {"split_parent", "equivalent", "unique", "dead"} <= set(small_tab["class_label"][small_ids])
    assert {"split_child", "equivalent", "novel", "dead"} <= set(large_tab["class_label"][large_ids])
    _check_verdicts(full, ultra, tiny_alignment, small_ids, large_ids)


def _planted_pair(
    tmp_path, rng, small: np.ndarray, large: np.ndarray, *, first_background: int, first_small_background: int = 1
):
    """Full and Ultra contexts of two small code matrices whose columns ``first_small_background``..
    (Full) and ``first_background``.. (Ultra) are filled with unrelated background features, and
    their alignment: ``(full, ultra, tables)``."""
    import scipy.sparse as sp
    from helpers import random_examples, random_sae

    from splatnlp.mechinterp.context import build_context

    n = len(small)
    for j in range(first_small_background, small.shape[1]):
        small[:, j] = (rng.random(n) < 0.2) * rng.uniform(0.5, 1.5, n)
    for j in range(first_background, large.shape[1]):
        large[:, j] = (rng.random(n) < 0.2) * rng.uniform(0.5, 1.5, n)
    examples = random_examples(rng, n)
    full = build_context(tmp_path / "full", sae=random_sae(1, n_features=small.shape[1]), examples=examples,
                         codes=sp.csr_matrix(small), model_type="full", n_top_examples=10, progress=False)
    ultra = build_context(tmp_path / "ultra", sae=random_sae(2, n_features=large.shape[1]), examples=examples,
                          codes=sp.csr_matrix(large), model_type="ultra", n_top_examples=10, progress=False)
    tables = align_contexts(full, ultra, options=AlignOptions(n_null_features=4, n_null_directions=4))
    return full, ultra, tables


def test_a_rare_nested_child_below_the_correlation_cut_is_a_child_everywhere(tmp_path) -> None:
    """Large feature 0 fires on 2 % of examples, always inside small feature 0 (30 %): its
    correlation is capped near sqrt(0.02 / 0.3 * 0.7 / 0.98) ~ 0.22 < 0.3, but it is nested.
    Large feature 1 fires as rarely, independently: novel. Both views and the decomposition agree."""


    rng = np.random.default_rng(5)
    n = 4000
    small = np.zeros((n, 4), np.float32)
    large = np.zeros((n, 6), np.float32)
    parent_rows = rng.random(n) < 0.3
    small[:, 0] = parent_rows * rng.uniform(0.5, 1.5, n)
    child_rows = parent_rows & (rng.random(n) < 0.02 / 0.3)
    large[:, 0] = child_rows * rng.uniform(0.5, 1.5, n)
    large[:, 1] = (rng.random(n) < 0.02) * rng.uniform(0.5, 1.5, n)
    full, ultra, tables = _planted_pair(tmp_path, rng, small, large, first_background=2)
    _, u_tab = tables.side("ultra")
    r = u_tab["best_activation_correlation_score"]
    assert r[0] < 0.3 and u_tab["nesting"][0] >= V.NESTED_CONTAINMENT  # below the cut, nested
    assert u_tab["parent"][0] == 0 and u_tab["class_label"][0] in ("partial", "split_child")
    assert u_tab["parent"][1] == -1 and u_tab["class_label"][1] == "novel"
    assert u_tab["nesting"][1] < V.NESTED_CONTAINMENT
    _check_verdicts(full, ultra, tables, range(4), range(6))
    report = FeatureMatcher(ultra, full).find_matches(0)
    assert "but nested" in report.verdict.rule and report.matches[0].relation == "source_part_of_target"
    # Nested beyond doubt: the verdict says the information test is not asked (not that it failed).
    assert u_tab["nesting"][0] >= V.CONFIDENT_NESTING and "beyond doubt" in report.verdict.rule
    assert report.verdict.error_ratio is None and "not nested beyond doubt" in report.verdict.undefined["error_ratio"]
    assert 0 in {m.feature for m in FeatureMatcher(full, ultra).find_decomposition(0).members}
    # Without the nesting test (a cut no bound reaches) it would be novel, as before.
    strict = align_contexts(full, ultra, options=AlignOptions(n_null_features=4, n_null_directions=4, nested_containment=1.0))
    assert strict.side("ultra")[1]["class_label"][0] == "novel"


def test_a_latent_that_holds_its_siblings_is_equivalent_everywhere(tmp_path, monkeypatch) -> None:
    """Large feature 0 fires wherever small feature 0 does (its magnitude on its own, so r ~ 0.7
    and no other equivalence test passes); large 1 and 2 split those examples between them. 1 and
    2 are children; 0 holds both and lies in neither: the same feature as its parent, by siblings.
    The alignment, both matchers (from the codes and from the saved alignment) and the pair
    relation agree."""
    import scipy.sparse as sp
    from helpers import random_sae

    from splatnlp.mechinterp.analysis import save_tables
    from splatnlp.mechinterp.context import build_context

    rng = np.random.default_rng(7)
    n = 4000
    small = np.zeros((n, 4), np.float32)
    large = np.zeros((n, 6), np.float32)
    on = rng.random(n) < 0.3
    part = rng.random(n) < 0.5
    small[:, 0] = on * rng.uniform(0.1, 2.0, n)
    large[:, 0] = on * rng.uniform(0.1, 2.0, n)
    large[:, 1] = (on & part) * rng.uniform(0.1, 2.0, n)
    large[:, 2] = (on & ~part) * rng.uniform(0.1, 2.0, n)
    full, ultra, tables = _planted_pair(tmp_path, rng, small, large, first_background=3)
    _, u_tab = tables.side("ultra")
    assert u_tab["parent"][:3].tolist() == [0, 0, 0]
    assert u_tab["class_label"][:3].tolist() == ["equivalent", "split_child", "split_child"]
    assert u_tab["siblings_inside"][0] >= V.EQUIVALENT_SIBLINGS_INSIDE
    assert u_tab["siblings_inside"][0] - u_tab["inside_siblings"][0] >= V.EQUIVALENT_SIBLING_ASYMMETRY
    assert u_tab["siblings_inside"][1] < V.EQUIVALENT_SIBLINGS_INSIDE
    assert np.isnan(u_tab["siblings_inside"][3:]).all()  # no parent, no siblings
    assert tables.side("full")[1]["class_label"][0] == "split_parent"
    _check_verdicts(full, ultra, tables, range(4), range(6))

    save_tables(tables, tmp_path / "alignment")
    for matcher in (FeatureMatcher(ultra, full), FeatureMatcher(ultra, full, alignment=tmp_path / "alignment")):
        report = matcher.find_matches(0)
        v = report.verdict
        assert v.label == "equivalent" and v.equivalent_by == "siblings", v.rule
        assert "sibling(s) lie inside it" in v.rule
        # From the codes (scipy over columns) or the tables (the compiled pass over rows): float64
        # sums over the 4,000 examples in different orders.
        tol = float_tol(np.float64, 4000, scale=2.0)
        assert v.siblings_inside == pytest.approx(float(u_tab["siblings_inside"][0]), abs=tol)
        assert v.inside_siblings == pytest.approx(float(u_tab["inside_siblings"][0]), abs=tol)
        assert report.matches[0].target_feature == 0 and report.matches[0].relation == "equivalent"
        child = matcher.find_matches(1).verdict
        assert child.label == "split_child" and child.equivalent_by is None
    relations = {m.target_feature: m.relation for m in FeatureMatcher(full, ultra).find_matches(0, n_top_matches=3).matches}
    assert relations == {0: "equivalent", 1: "source_split_by_target", 2: "source_split_by_target"}
    # Without numba, align sums the siblings from their columns instead: the same evidence.
    from splatnlp.mechinterp.analysis.metrics import kernels

    with monkeypatch.context() as m:
        m.setattr(kernels, "AVAILABLE", False)
        plain = align_contexts(full, ultra, options=AlignOptions(n_null_features=4, n_null_directions=4))
    _, p_tab = plain.side("ultra")
    assert p_tab["class_label"].tolist() == u_tab["class_label"].tolist()
    for key in ("siblings_inside", "inside_siblings"):
        tol = float_tol(np.float64, 4000, scale=2.0)
        np.testing.assert_allclose(p_tab[key], u_tab[key], rtol=tol, atol=tol)
    # Without its siblings the sibling test cannot pass: the rule reads them. (The pair is still
    # equivalent, by proportionality: a latent that fires on all of its parent's examples and on
    # no other is near a multiple of it there, squared cosine ~0.6 with independent magnitudes.)
    alone_codes = sp.csr_matrix(np.where(np.isin(np.arange(6), [1, 2]), 0.0, large).astype(np.float32))
    alone_ctx = build_context(tmp_path / "alone", sae=random_sae(2, n_features=6), examples=full.examples,
                              codes=alone_codes, model_type="ultra", n_top_examples=10, progress=False)
    alone = align_contexts(full, alone_ctx, options=AlignOptions(n_null_features=4, n_null_directions=4))
    a_tab = alone.side("ultra")[1]
    assert np.isnan(a_tab["siblings_inside"][0]) and a_tab["class_label"][0] == "equivalent"
    assert V.equivalent_by(a_tab["parent_score"][:1], a_tab["parent_decoder_cosine"][:1],
                           siblings_inside=a_tab["siblings_inside"][:1], inside_siblings=a_tab["inside_siblings"][:1])[0] == ""
    assert V.equivalent_by(a_tab["parent_score"][:1], a_tab["parent_decoder_cosine"][:1],
                           proportionality=a_tab["parent_proportionality"][:1])[0] == "proportionality"


def test_equivalent_by_proportionality_needs_the_cut_the_gap_over_siblings_and_r() -> None:
    corr = np.full(5, 0.6)
    corr[4] = 0.4  # below COACTIVE_MIN_CORRELATION
    dec = np.zeros(5)
    prop = np.array([0.9, 0.9, 0.45, 0.9, 0.9])
    sib = np.array([np.nan, 0.75, np.nan, 0.6, np.nan])  # NaN: no sibling, compared with 0
    by = V.equivalent_by(corr, dec, proportionality=prop, sibling_proportionality=sib)
    assert by.tolist() == ["proportionality", "", "", "proportionality", ""]
    # Unknown evidence leaves the test out; a stronger test takes precedence in the report.
    assert V.equivalent_by(corr, dec).tolist() == [""] * 5
    assert V.equivalent_by([0.95], [0.0], proportionality=[0.9])[0] == "correlation"
    labels = V.pair_relations(corr, dec, np.ones(5, bool), source_is_larger=True, proportionality=prop,
                              sibling_proportionality=sib)
    assert labels.tolist() == ["equivalent", "source_part_of_target", "source_part_of_target", "equivalent",
                               "source_part_of_target"]


def test_a_latent_that_scales_with_its_parent_is_equivalent_everywhere(tmp_path) -> None:
    """Large feature 0 is its parent (small 0) times a factor near 1 wherever that fires, and also
    fires off it (so r < 0.9); the parent's magnitudes vary little, so the co-active correlation
    is low: only the proportionality test passes, and 0 is ``equivalent`` (else ``partial``).
    Large 1-3 are each as proportional to small 1, but all alike: no gap over the siblings, so
    they stay children. Every view agrees, from the codes and from a saved alignment."""
    from splatnlp.mechinterp.analysis import save_tables

    rng = np.random.default_rng(11)
    n = 4000
    small = np.zeros((n, 4), np.float32)
    large = np.zeros((n, 8), np.float32)
    off = lambda: (rng.random(n) < 0.25) * rng.uniform(0.5, 1.5, n)  # noqa: E731
    for s, kids in ((0, [0]), (1, [1, 2, 3])):
        on = rng.random(n) < 0.3
        small[:, s] = on * rng.uniform(1.0, 1.2, n)
        for u in kids:
            large[:, u] = np.where(on, small[:, s] * rng.uniform(0.9, 1.1, n), off())
    full, ultra, tables = _planted_pair(tmp_path, rng, small, large, first_background=4, first_small_background=2)
    _, u_tab = tables.side("ultra")
    assert u_tab["parent"][:4].tolist() == [0, 1, 1, 1]
    assert u_tab["class_label"][:4].tolist() == ["equivalent", "split_child", "split_child", "split_child"]
    assert u_tab["parent_proportionality"][:4].min() >= 0.9
    assert np.isnan(u_tab["sibling_proportionality"][0])  # an only child
    assert (u_tab["parent_proportionality"][1:4] - u_tab["sibling_proportionality"][1:4]).max() < 0.05
    assert u_tab["parent_score"][0] < V.EQUIVALENT_CORRELATION
    assert V.coactive_lower_bound(u_tab["parent_coactive_correlation"][0], u_tab["parent_coactive_count"][0],
                                  n_tests=8) < V.EQUIVALENT_COACTIVE_CORRELATION
    _check_verdicts(full, ultra, tables, range(4), range(8))

    save_tables(tables, tmp_path / "alignment")
    tol = float_tol(np.float64, n, scale=2.0)
    for matcher in (FeatureMatcher(ultra, full), FeatureMatcher(ultra, full, alignment=tmp_path / "alignment")):
        report = matcher.find_matches(0)
        v = report.verdict
        assert v.label == "equivalent" and v.equivalent_by == "proportionality", v.rule
        assert "nearly a multiple of it" in v.rule and "siblings' (none: 0)" in v.rule
        assert v.parent_proportionality == pytest.approx(float(u_tab["parent_proportionality"][0]), abs=tol)
        assert v.sibling_proportionality is None and "sibling_proportionality" in v.undefined
        assert report.matches[0].relation == "equivalent"
        child = matcher.find_matches(2).verdict
        assert child.label == "split_child" and child.equivalent_by is None
        assert child.sibling_proportionality == pytest.approx(float(u_tab["sibling_proportionality"][2]), abs=tol)
    relations = {m.target_feature: m.relation for m in FeatureMatcher(full, ultra).find_matches(1, n_top_matches=3).matches}
    assert relations == {1: "source_split_by_target", 2: "source_split_by_target", 3: "source_split_by_target"}


def test_the_information_test_decides_the_weak_parents_below_the_cut() -> None:
    # Best correlations: above the cut; nested below it; in [0.25, 0.3) not nested; below 0.25 not nested.
    corr = np.array([[0.5, 0.1], [0.2, 0.1], [0.27, 0.1], [0.2, 0.1], [0.27, 0.1], [0.2, 0.1], [0.27, 0.1]])
    nesting = np.array([0.1, 0.6, 0.1, 0.1, 0.1, 0.6, 0.1])
    ratio = np.array([2.0, 1.0, 1.0, 1.0, 1.2, 1.2, np.nan])
    parent, _ = V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.5, error_ratio=ratio)
    # Above the cut the ratio changes nothing; nested and covered: parent; r >= 0.25 and covered:
    # parent; weak and not covered: novel; unknown ratio: nesting alone, and the band is novel.
    assert parent.tolist() == [0, 0, 0, -1, -1, -1, -1]
    assert V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.5)[0].tolist() == [0, 0, -1, -1, -1, 0, -1]
    unknown = V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.5, error_ratio=np.full(7, np.nan))[0]
    assert unknown.tolist() == [0, 0, -1, -1, -1, 0, -1]  # the rule before the test
    at_cut = np.full(7, V.NOVEL_ERROR_RATIO)
    assert V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.5, error_ratio=at_cut)[0].tolist() == [0, 0, 0, -1, 0, 0, 0]
    need = V.needs_error_ratio(corr.max(1), nesting, 0.3, 0.5)
    assert need.tolist() == [False, True, True, False, True, True, True]


def test_a_feature_nested_beyond_doubt_keeps_its_parent_whatever_the_error_ratio() -> None:
    # Below the cut, nested at 0.6 / at the high-confidence level / above it / at r >= 0.25 too.
    corr = np.array([[0.2, 0.1], [0.2, 0.1], [0.2, 0.1], [0.27, 0.1], [0.2, 0.1]])
    nesting = np.array([0.6, V.CONFIDENT_NESTING, 0.95, 0.9, 0.95])
    ratio = np.array([1.2, 1.2, 1.5, 1.3, np.nan])
    parent, score = V.assign_parents(corr, 0.3, nesting=nesting, nested_containment=0.5, error_ratio=ratio)
    assert parent.tolist() == [-1, 0, 0, 0, 0]
    assert score[1:].tolist() == [0.2, 0.2, 0.27, 0.2]
    # The ratio is asked only where it can decide.
    assert V.needs_error_ratio(corr.max(1), nesting, 0.3, 0.5).tolist() == [True, False, False, False, False]
    # With a nesting cut above the confidence level, a feature under that cut is not nested: no parent, nothing to ask.
    assert V.needs_error_ratio(np.array([0.2]), np.array([0.85]), 0.3, 0.9).tolist() == [False]
    assert V.assign_parents(corr[:1], 0.3, nesting=np.array([0.85]), nested_containment=0.9, error_ratio=np.array([1.0]))[0].tolist() == [-1]


def test_matcher_and_alignment_agree_where_the_information_test_decides(tiny_demo_dir, tiny_alignment) -> None:
    """On the tiny demo (its contexts keep their activations) every Ultra feature whose parent the
    information test decides gets the same verdict and error ratio from the codes as in the
    alignment, and the Full side lists the same children."""
    from splatnlp.mechinterp.context import MechInterpContext

    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    _, small_tab = tiny_alignment.side("full")
    _, tab = tiny_alignment.side("ultra")
    need = V.needs_error_ratio(tab["best_activation_correlation_score"], tab["nesting"])
    covered = need & (tab["error_ratio"] <= V.NOVEL_ERROR_RATIO)
    assert covered.sum() >= 100 and (need & ~covered).sum() >= 50  # both outcomes occur here
    rng = np.random.default_rng(2)
    ids = np.concatenate([rng.choice(np.flatnonzero(covered), 6, replace=False), rng.choice(np.flatnonzero(need & ~covered), 6, replace=False)])
    from_large = FeatureMatcher(ultra, full)
    for u in ids.tolist():
        v = from_large.find_matches(u, decompose=False).verdict
        assert v.label == tab["class_label"][u] and (v.parent if v.parent is not None else -1) == tab["parent"][u], u
        assert v.error_ratio == pytest.approx(tab["error_ratio"][u], rel=1e-9), u
        assert ("error ratio" in v.rule) and (("worse than elsewhere" in v.rule) == (v.parent is None)), v.rule
    # A Full parent of a child the test kept lists it among its children.
    from_small = FeatureMatcher(full, ultra)
    for u in ids[:3].tolist():
        p = int(tab["parent"][u])
        v = from_small.find_matches(p, decompose=False).verdict
        assert u in v.children and v.label == small_tab["class_label"][p], (u, p)
    # Where the rule does not ask it, the verdict says why it is not there.
    plain = int(np.flatnonzero(~need & (tab["class_label"].astype(str) == "split_child"))[0])
    v = from_large.find_matches(plain, decompose=False).verdict
    assert v.error_ratio is None and v.undefined["error_ratio"].startswith("not needed")


def test_without_activations_the_information_test_is_reported_as_not_run(pair: Pair, aligned) -> None:
    # The planted pair is built from codes: no error ratio anywhere, and the report says why and
    # which rule was applied instead.
    large_key = aligned.report.larger_side
    ratio = (aligned.a if large_key == "a" else aligned.b)["error_ratio"]
    assert np.isnan(ratio).all()
    (note,) = [w for w in aligned.report.warnings if "information test" in w]
    assert "could not run" in note and "has no activations" in note and "nested features kept their parent" in note
