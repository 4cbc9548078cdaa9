"""Tests of splatnlp/mechinterp/state/transfer.py: labels carried to each labelled feature's
counterparts, checked against the matcher's verdicts one feature at a time; dry run, apply with
provenance, existing labels kept unless overwrite, conflicts, and refused inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import other_example_set

from splatnlp.mechinterp.state.store import ResearchStore
from splatnlp.mechinterp.state.transfer import LabelTransfer, transfer_labels


@pytest.fixture
def contexts(demo_contexts: Path):
    from splatnlp.mechinterp.context import load_context

    return load_context("ultra"), load_context("full")


@pytest.fixture
def truth(demo_contexts: Path):
    from splatnlp.mechinterp.demo.build import load_ground_truth

    return load_ground_truth(demo_contexts)


def _verdict(source, target, feature: int):
    from splatnlp.mechinterp.analysis import FeatureMatcher

    return (
        FeatureMatcher(source, target)
        .find_matches(feature, n_top_matches=3, decompose=False)
        .verdict
    )


def _children_of_one_parent(truth, ultra, full) -> tuple[int, int, int]:
    """Two planted Ultra children whose verdicts name the same Full parent: (parent, a, b)."""
    from splatnlp.mechinterp.analysis import FeatureMatcher

    matcher = FeatureMatcher(ultra, full)
    seen: dict[int, int] = {}
    for u in [i for i, c in enumerate(truth.ultra_class) if c == "child"][:200]:
        parent = matcher.find_matches(u, n_top_matches=1, decompose=False).verdict.parent
        if parent in seen:
            return parent, seen[parent], u
        seen[parent] = u
    raise AssertionError("no two of the first 200 demo children share a parent")


def test_dry_run_proposes_each_verdicts_counterpart(
    contexts, truth, store: ResearchStore, db: Path
) -> None:
    ultra, full = contexts
    child = truth.ultra_class.index("child")
    novel = truth.ultra_class.index("novel")
    equivalent = truth.ultra_class.index("equivalent")
    for f, label in ((child, "child label"), (novel, "novel label"), (equivalent, "twin label")):
        store.manager(f, "ultra").set_label(label)
    rows_before = store.export_json()["features"]

    result = transfer_labels(store, ultra, full)
    assert result.dry_run and result.n_applied == 0 and result.n_labelled == 3
    assert store.export_json()["features"] == rows_before  # a dry run writes nothing
    by_source = {p.source_feature: p for p in result.proposals}
    assert sorted(by_source) == sorted([child, equivalent])
    for f in (child, equivalent):  # the same answer as the matcher, one query at a time
        v = _verdict(ultra, full, f)
        p = by_source[f]
        assert (p.target_model, p.target_feature) == ("full", v.parent)
        assert (
            p.correlation == v.parent_score
            and p.verdict_label == v.label
            and p.verdict_rule == v.rule
        )
        assert p.provenance == f"from ultra {f}, r = {v.parent_score:.2f}, {v.label}"
        assert p.action == "set" and p.current_label is None
    assert by_source[equivalent].verdict_label == "equivalent"
    (skip,) = result.skipped
    assert skip.source_feature == novel and skip.verdict_label == "novel"
    assert skip.reason.startswith("no full counterpart: verdict novel")
    LabelTransfer.model_validate_json(result.model_dump_json())  # JSON round trip


def test_apply_writes_labels_with_provenance_and_keeps_existing_ones(
    contexts, truth, store: ResearchStore
) -> None:
    ultra, full = contexts
    child = truth.ultra_class.index("child")
    other = next(
        u
        for u, c in enumerate(truth.ultra_class)
        if c == "child" and _verdict(ultra, full, u).parent != _verdict(ultra, full, child).parent
    )
    store.manager(child, "ultra").set_label("SSU stacker")
    store.manager(other, "ultra").set_label("ink saver")
    kept_parent = _verdict(ultra, full, other).parent
    store.manager(kept_parent, "full").set_label("mine")

    applied = transfer_labels(store, ultra, full, apply=True)
    by_source = {p.source_feature: p for p in applied.proposals}
    p = by_source[child]
    assert p.applied and p.action == "set" and applied.n_applied == 1
    state = store.feature_state(p.target_feature, "full")
    assert state.label == "SSU stacker" and state.label_provenance == p.provenance
    assert state.history[-1].action == "label_set" and p.provenance in state.history[-1].detail
    kept = by_source[other]
    assert kept.action == "keep_existing" and not kept.applied and kept.current_label == "mine"
    assert "--overwrite" in kept.note
    assert store.feature_state(kept_parent, "full").label == "mine"

    again = transfer_labels(store, ultra, full, apply=True)  # idempotent
    assert {q.source_feature: q.action for q in again.proposals} == {
        child: "unchanged",
        other: "keep_existing",
    }
    assert again.n_applied == 0

    forced = transfer_labels(store, ultra, full, apply=True, overwrite=True)
    assert {q.source_feature: q.action for q in forced.proposals} == {
        child: "unchanged",
        other: "overwrite",
    }
    state = store.feature_state(kept_parent, "full")
    assert state.label == "ink saver" and state.label_provenance.startswith(
        f"from ultra {other}, r = "
    )
    store.manager(kept_parent, "full").set_label("by hand")  # a label set by hand has no provenance
    assert store.feature_state(kept_parent, "full").label_provenance is None


def test_the_best_correlated_of_several_sources_wins(contexts, truth, store: ResearchStore) -> None:
    ultra, full = contexts
    parent, a, b = _children_of_one_parent(truth, ultra, full)
    store.manager(a, "ultra").set_label("label a")
    store.manager(b, "ultra").set_label("label b")
    result = transfer_labels(store, ultra, full, apply=True)
    ra, rb = (_verdict(ultra, full, f).parent_score for f in (a, b))
    winner, loser = (a, b) if ra >= rb else (b, a)
    actions = {p.source_feature: p.action for p in result.proposals}
    assert actions == {winner: "set", loser: "superseded"}
    assert store.feature_state(parent, "full").label == f"label {'a' if winner == a else 'b'}"


def test_smaller_side_labels_go_to_every_child(contexts, truth, store: ResearchStore) -> None:
    ultra, full = contexts
    split = truth.full_class.index("split")
    store.manager(split, "full").set_label("family")
    result = transfer_labels(store, full, ultra)
    v = _verdict(full, ultra, split)
    assert v.label == "split_parent" and len(v.children) >= 2
    assert [p.target_feature for p in result.proposals] == v.children
    assert [p.correlation for p in result.proposals] == v.children_scores
    assert all(p.relation in ("source_split_by_target", "equivalent") for p in result.proposals)


def test_pairs_beyond_the_listed_matches_get_the_same_evidence(
    contexts, truth, store: ResearchStore
) -> None:
    ultra, full = contexts
    split = truth.full_class.index("split")
    store.manager(split, "full").set_label("family")
    few, many = (transfer_labels(store, full, ultra, n_top_matches=n) for n in (1, 200))
    assert len(few.proposals) >= 2  # at most one child is listed with n_top_matches=1
    assert [p.model_dump(exclude={"note"}) for p in few.proposals] == [
        p.model_dump(exclude={"note"}) for p in many.proposals
    ]


def test_ids_the_context_lacks_are_skipped(contexts, store: ResearchStore) -> None:
    ultra, full = contexts
    store.manager(5000, "full").set_label("beyond the 2048 features")
    result = transfer_labels(store, full, ultra)
    (skip,) = result.skipped
    assert skip.source_feature == 5000 and "5000 is out of range for 'full'" in skip.reason


def test_no_labels_no_proposals(contexts, store: ResearchStore) -> None:
    result = transfer_labels(store, *contexts)
    assert (result.n_labelled, result.proposals, result.skipped) == (0, [], [])


# -- refused inputs --------------------------------------------------------------------------
def test_contexts_of_different_example_sets_are_refused(
    demo_contexts: Path, contexts, tmp_path: Path, store: ResearchStore
) -> None:
    from splatnlp.mechinterp.context import load_context

    ultra, full = contexts
    store.manager(1, "ultra").set_label("x")
    other = load_context(other_example_set(demo_contexts / "full", tmp_path / "full-b", "full-b"))
    with pytest.raises(
        ValueError, match=r"contexts 'ultra' .* and 'full-b' .* different example sets"
    ) as info:
        transfer_labels(store, ultra, other, apply=True)
    assert ultra.fingerprint in str(info.value) and "sha256:" + "0" * 64 in str(info.value)
    assert store.feature_state(1, "ultra").label == "x" and store.labels("full") == {}


def test_same_model_and_wrong_models_are_refused(contexts, store: ResearchStore) -> None:
    ultra, full = contexts
    with pytest.raises(ValueError, match=r"from_model and to_model are both 'ultra'"):
        transfer_labels(store, ultra, ultra)
    with pytest.raises(
        ValueError, match=r"context 'full' .* holds the 'full' model, not 'ultra' \(--from ultra\)"
    ):
        transfer_labels(store, full, ultra, from_model="ultra", to_model="full")
    with pytest.raises(
        ValueError, match=r"model 'medium' is not known; expected one of \['full', 'ultra'\]"
    ):
        transfer_labels(store, ultra, full, from_model="medium")
    with pytest.raises(ValueError, match=r"n_top_matches must be an integer >= 1, got 0"):
        transfer_labels(store, ultra, full, n_top_matches=0)
