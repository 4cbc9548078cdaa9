"""The overlap of two features' active examples in ``FeatureMatcher.compare_features``
(splatnlp/mechinterp/analysis/match/matcher.py, FeatureComparison in reports.py), against a
dense brute force on the planted pair and on the tiny demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    N_SOURCE,
    N_TARGET,
    SRC_DEAD,
    SRC_FEW,
    SRC_PLAIN,
    SRC_TRACED,
    TGT_CONSTANT,
    TGT_DEAD,
    TGT_SUPERSET,
    TGT_TRACE,
    Pair,
    random_sae,
)

from splatnlp.mechinterp.analysis import FeatureComparison, FeatureMatcher
from splatnlp.mechinterp.context import MechInterpContext, build_context
from splatnlp.mechinterp.context.vocab import Vocab


def brute_overlap(s: np.ndarray, t: np.ndarray, ids: np.ndarray) -> dict:
    """Counts and up to 3 example ids of each kind, by plain Python sorting of dense columns."""
    n = len(s)
    both = [i for i in range(n) if s[i] > 0 and t[i] > 0]
    only_s = [i for i in range(n) if s[i] > 0 and t[i] == 0]
    only_t = [i for i in range(n) if s[i] == 0 and t[i] > 0]
    s_max, t_max = s.max(), t.max()

    def top3(rows: list[int], key) -> list[int]:
        return [int(ids[i]) for i in sorted(rows, key=lambda i: (-key(i), i))[:3]]

    return {
        "n_both": len(both),
        "n_only_source": len(only_s),
        "n_only_target": len(only_t),
        "n_neither": n - len(both) - len(only_s) - len(only_t),
        "overlap_examples": {
            "both": top3(both, lambda i: min(s[i] / s_max, t[i] / t_max)),
            "only_source": top3(only_s, lambda i: s[i]),
            "only_target": top3(only_t, lambda i: t[i]),
        },
    }


def fields(c: FeatureComparison) -> dict:
    return c.model_dump(
        include={"n_both", "n_only_source", "n_only_target", "n_neither", "overlap_examples"}
    )


@pytest.fixture(scope="module")
def matcher(pair: Pair) -> FeatureMatcher:
    return FeatureMatcher(pair.source, pair.target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (SRC_PLAIN, TGT_SUPERSET),  # only_source empty: the target is active wherever the source is
        (SRC_TRACED, TGT_TRACE),
        (SRC_DEAD, 0),  # a dead source: nothing both or only-source
        (SRC_FEW, TGT_DEAD),
        (SRC_PLAIN, TGT_CONSTANT),  # a target active everywhere: no only-source, no neither
        *[(s, t) for s in range(N_SOURCE) for t in range(0, N_TARGET, 7)],
    ],
)
def test_overlap_matches_brute_force(
    pair: Pair, matcher: FeatureMatcher, source: int, target: int
) -> None:
    got = matcher.compare_features(source, target)
    want = brute_overlap(
        pair.source_codes[:, source], pair.target_codes[:, target], pair.examples.example_ids
    )
    assert fields(got) == want
    assert got.n_both == got.n_coactive
    assert got.n_both + got.n_only_source + got.n_only_target + got.n_neither == matcher.n_examples


def test_planted_cases(matcher: FeatureMatcher) -> None:
    superset = matcher.compare_features(SRC_PLAIN, TGT_SUPERSET)
    assert superset.n_only_source == 0 and superset.overlap_examples["only_source"] == []
    assert superset.n_both > 3 and len(superset.overlap_examples["both"]) == 3
    dead = matcher.compare_features(SRC_DEAD, TGT_SUPERSET)
    assert dead.n_both == dead.n_only_source == 0
    assert dead.overlap_examples == {
        "both": [],
        "only_source": [],
        "only_target": dead.overlap_examples["only_target"],
    }


def test_tiny_demo_pair_uses_example_ids(tiny_demo_dir: Path) -> None:
    ultra, full = (
        MechInterpContext(tiny_demo_dir / "ultra"),
        MechInterpContext(tiny_demo_dir / "full"),
    )
    m = FeatureMatcher(ultra, full)
    for source, target in ((5127, 1335), (5127, 1126), (18712, 361)):
        s = ultra.codes.csr[:, source].toarray().ravel().astype(np.float64)
        t = full.codes.csr[:, target].toarray().ravel().astype(np.float64)
        assert fields(m.compare_features(source, target)) == brute_overlap(
            s, t, ultra.examples.example_ids
        )


def test_json_round_trip_and_old_documents(matcher: FeatureMatcher) -> None:
    got = matcher.compare_features(SRC_PLAIN, TGT_SUPERSET)
    assert FeatureComparison.model_validate_json(got.model_dump_json()) == got
    # A comparison saved before the overlap fields existed still loads; they are None / empty.
    old = got.model_dump(
        exclude={"n_both", "n_only_source", "n_only_target", "n_neither", "overlap_examples"}
    )
    loaded = FeatureComparison.model_validate(old)
    assert loaded.n_both is None and loaded.overlap_examples == {}


def test_ids_are_example_ids_not_rows(tmp_path: Path) -> None:
    """Generic token examples with ids 500 + 3 * row: the listed ids are ids."""
    rng = np.random.default_rng(5)
    vocab = Vocab.from_tokens(["a", "b", "c"])
    records = [{"id": 500 + 3 * i, "tokens": ["a"] if i % 2 else ["b", "c"]} for i in range(60)]
    codes = {
        name: (rng.random((60, k)) * (rng.random((60, k)) < 0.5)).astype(np.float32)
        for name, k in (("ultra", 6), ("full", 4))
    }
    ctx = {
        name: build_context(
            tmp_path / name,
            sae=random_sae(k, d_model=4, n_features=c.shape[1]),
            examples=records,
            vocab=vocab,
            codes=c,
            progress=False,
        )
        for k, (name, c) in enumerate(codes.items())
    }
    m = FeatureMatcher(ctx["ultra"], ctx["full"])
    ids = ctx["ultra"].examples.example_ids
    assert ids[0] == 500 and ids[-1] == 500 + 3 * 59
    for source in range(6):
        for target in range(4):
            want = brute_overlap(
                codes["ultra"][:, source].astype(np.float64),
                codes["full"][:, target].astype(np.float64),
                ids,
            )
            assert fields(m.compare_features(source, target)) == want
