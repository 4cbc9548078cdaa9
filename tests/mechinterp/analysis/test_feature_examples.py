"""Tests of splatnlp/mechinterp/analysis/examples.py: every field of ``feature_examples`` against
a brute force over the example records (the tiny demo, and a generic-token context whose example
ids are not its rows), the never-active case and bad input."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers import random_sae

from splatnlp.mechinterp.analysis import FeatureExamples, feature_examples
from splatnlp.mechinterp.context import MechInterpContext, build_context
from splatnlp.mechinterp.context.vocab import Vocab

GENERIC_VOCAB = Vocab.from_tokens(["alpha", "beta", "gamma", "delta", "eps"])
N_GENERIC, GENERIC_DEAD = 80, 2


def brute_force(ctx: MechInterpContext, feature: int, top: int, n_tokens: int) -> dict:
    """What ``feature_examples`` should return, from a CSR column read and the records, in
    plain Python (exact fractions for the enrichment order)."""
    codes = ctx.codes.csr[:, feature].toarray().ravel().astype(np.float64)
    records = [ctx.examples.record(i) for i in range(ctx.n_examples)]
    key = "tokens" if "tokens" in records[0] else "abilities"
    active = [i for i in range(ctx.n_examples) if codes[i] > 0]
    n, n_active = ctx.n_examples, len(active)
    ranked = sorted(active, key=lambda i: (-codes[i], i))[:top]
    count_all = Counter(t for r in records for t in set(r[key]))
    count_active = Counter(t for i in active for t in set(records[i][key]))
    vocab_order = {t: k for k, t in enumerate(ctx.vocab.tokens)}
    exact = {t: Fraction(c * n, count_all[t] * n_active) for t, c in count_active.items()}
    tokens = sorted(count_active, key=lambda t: (-exact[t], -count_active[t], vocab_order[t]))[
        :n_tokens
    ]
    weapons = Counter(
        records[i].get("weapon") for i in active if records[i].get("weapon") is not None
    )
    return {
        "active": active,
        "values": codes[active],
        "top": [
            (records[i]["id"], records[i].get("weapon"), records[i][key], codes[i]) for i in ranked
        ],
        "tokens": [
            (t, count_active[t], count_active[t] / n_active, count_all[t] / n, float(exact[t]))
            for t in tokens
        ],
        "weapons": sorted(weapons.items(), key=lambda kv: (-kv[1], kv[0])),
    }


def check_against_brute_force(
    ctx: MechInterpContext, feature: int, top: int = 10, n_tokens: int = 15
) -> FeatureExamples:
    got = feature_examples(ctx, feature, top=top, n_tokens=n_tokens)
    want = brute_force(ctx, feature, top, n_tokens)
    n_active = len(want["active"])
    assert got.model == ctx.model_type and got.feature == feature
    assert got.n_examples == ctx.n_examples and got.n_active == n_active
    assert got.activation_rate == pytest.approx(n_active / ctx.n_examples, rel=1e-15)
    assert list(got.quantiles) == ["q50", "q90", "q99", "max"]
    want_q = np.quantile(want["values"], [0.5, 0.9, 0.99, 1.0])
    np.testing.assert_allclose(list(got.quantiles.values()), want_q, rtol=1e-12)
    assert [(r.example_id, r.weapon, r.tokens) for r in got.top] == [t[:3] for t in want["top"]]
    # float32 codes widened to float64 on both sides: equal exactly.
    assert [r.activation for r in got.top] == [t[3] for t in want["top"]]
    assert [t.token for t in got.tokens] == [t[0] for t in want["tokens"]]
    assert [t.n_active for t in got.tokens] == [t[1] for t in want["tokens"]]
    for row, (_, _, rate_active, rate_all, enrichment) in zip(
        got.tokens, want["tokens"], strict=True
    ):
        assert row.rate_active == pytest.approx(rate_active, rel=1e-15)
        assert row.rate_all == pytest.approx(rate_all, rel=1e-15)
        assert row.enrichment == pytest.approx(enrichment, rel=1e-15)
        assert row.enrichment == pytest.approx(row.rate_active / row.rate_all, rel=1e-14)
    assert [(w.weapon, w.n_active) for w in got.weapons] == want["weapons"]
    for w in got.weapons:
        assert w.share == pytest.approx(w.n_active / n_active, rel=1e-15)
    return got


@pytest.fixture(scope="module")
def ultra(tiny_demo_dir: Path) -> MechInterpContext:
    return MechInterpContext(tiny_demo_dir / "ultra")


@pytest.fixture(scope="module")
def full(tiny_demo_dir: Path) -> MechInterpContext:
    return MechInterpContext(tiny_demo_dir / "full")


@pytest.fixture(scope="module")
def generic(tmp_path_factory: pytest.TempPathFactory) -> MechInterpContext:
    """Generic token records (no weapon), example ids 1000 + 7 * row, 5 features, feature 2
    never active, feature 4 active on rows holding no token."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(N_GENERIC):
        size = 0 if i % 10 == 0 else int(rng.integers(1, 5))
        records.append(
            {"id": 1000 + 7 * i, "tokens": list(rng.choice(GENERIC_VOCAB.tokens, size=size))}
        )
    codes = (rng.random((N_GENERIC, 5)) * (rng.random((N_GENERIC, 5)) < 0.4)).astype(np.float32)
    codes[:, GENERIC_DEAD] = 0.0
    codes[:, 4] = 0.0
    codes[::10, 4] = 0.5 + np.arange(N_GENERIC // 10, dtype=np.float32)  # the token-less rows
    return build_context(
        tmp_path_factory.mktemp("generic") / "generic",
        sae=random_sae(0, d_model=4, n_features=5),
        examples=records,
        vocab=GENERIC_VOCAB,
        codes=codes,
        progress=False,
    )


@pytest.mark.parametrize(
    ("feature", "top", "n_tokens"), [(5127, 10, 15), (18712, 3, 40), (100, 1, 1)]
)
def test_ultra_features_match_brute_force(
    ultra: MechInterpContext, feature: int, top: int, n_tokens: int
) -> None:
    got = check_against_brute_force(ultra, feature, top, n_tokens)
    assert got.n_active > 0 and got.weapons and got.note == ""
    assert len(got.top) == min(top, got.n_active)


def test_full_feature_matches_brute_force(full: MechInterpContext) -> None:
    got = check_against_brute_force(full, 361, top=25, n_tokens=1000)
    # n_tokens above the number of seen tokens lists all of them, none with a zero count.
    assert all(t.n_active > 0 for t in got.tokens)
    assert sum(w.n_active for w in got.weapons) == got.n_active


def test_enrichment_ties_are_broken_by_count(ultra: MechInterpContext) -> None:
    """5127 has tokens with equal enrichment (13/78 vs 10/60 of their examples); the more
    frequent comes first, although rate_active / rate_all rounds them apart."""
    got = feature_examples(ultra, 5127, n_tokens=50)
    by_name = {t.token: t for t in got.tokens}
    a, b = by_name["run_speed_up_15"], by_name["swim_speed_up_57"]
    assert (a.n_active, b.n_active) == (13, 10) and a.enrichment == b.enrichment
    assert a.rate_active / a.rate_all != b.rate_active / b.rate_all  # the rounding this avoids
    assert got.tokens.index(a) < got.tokens.index(b)
    for a, b in zip(got.tokens, got.tokens[1:], strict=False):
        assert (a.enrichment, a.n_active) >= (b.enrichment, b.n_active)


def test_generic_tokens(generic: MechInterpContext) -> None:
    for feature in (0, 1, 3):
        got = check_against_brute_force(generic, feature, top=5, n_tokens=3)
        assert got.weapons == [] and all(r.weapon is None for r in got.top)
        assert "generic token data" in got.note
    # Ids, not rows: the strongest example of feature 4 is row 70, id 1490.
    got = check_against_brute_force(generic, 4, top=2)
    assert [r.example_id for r in got.top] == [1000 + 7 * 70, 1000 + 7 * 60]
    assert got.tokens == [] and "no tokens" in got.note


def test_never_active_feature(generic: MechInterpContext, ultra: MechInterpContext) -> None:
    dead = int(np.flatnonzero(np.diff(ultra.codes.csc.indptr) == 0)[0])
    for ctx, feature in ((generic, GENERIC_DEAD), (ultra, dead)):
        got = feature_examples(ctx, feature)
        assert got.n_active == 0 and got.activation_rate == 0.0
        assert got.quantiles == {} and got.top == [] and got.tokens == [] and got.weapons == []
        assert f"feature {feature} is never active" in got.note


def test_json_round_trip(ultra: MechInterpContext) -> None:
    got = feature_examples(ultra, 5127, top=4)
    assert FeatureExamples.model_validate_json(got.model_dump_json()) == got


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"feature": 24576},
            ValueError,
            r"feature 24576 is out of range for 'ultra' \(0\.\.24575\)",
        ),
        ({"feature": -1}, ValueError, r"feature -1 is out of range for 'ultra' \(0\.\.24575\)"),
        ({"feature": "5"}, TypeError, r"feature id must be an integer, got '5'"),
        ({"feature": True}, TypeError, r"feature id must be an integer, got True"),
        ({"feature": 5, "top": 0}, ValueError, r"top must be an integer >= 1, got 0"),
        ({"feature": 5, "top": 2.5}, ValueError, r"top must be an integer >= 1, got 2\.5"),
        ({"feature": 5, "n_tokens": -3}, ValueError, r"n_tokens must be an integer >= 1, got -3"),
        (
            {"feature": 5, "n_tokens": False},
            ValueError,
            r"n_tokens must be an integer >= 1, got False",
        ),
    ],
)
def test_bad_input(ultra: MechInterpContext, kwargs: dict, error: type, message: str) -> None:
    feature = kwargs.pop("feature")
    with pytest.raises(error, match=message):
        feature_examples(ultra, feature, **kwargs)


def test_not_a_context() -> None:
    with pytest.raises(TypeError, match=r"ctx must be a MechInterpContext, got str"):
        feature_examples("ultra", 5)  # type: ignore[arg-type]


def test_import_is_light() -> None:
    code = (
        "import sys; from splatnlp.mechinterp.analysis import feature_examples, FeatureExamples; "
        "import splatnlp.mechinterp.analysis.examples; assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3]
    )


def test_the_example_set_is_left_as_it_was(generic: MechInterpContext) -> None:
    """Counting sorts and de-duplicates tokens in scratch copies, never in the example set (the
    generic records repeat tokens, which an in-place de-duplication would drop)."""
    for feature in range(5):
        feature_examples(generic, feature)
    fresh = MechInterpContext(generic.path).examples
    assert any(len(set(fresh.abilities(i))) < len(fresh.abilities(i)) for i in range(N_GENERIC))
    assert [generic.examples.record(i) for i in range(N_GENERIC)] == [
        fresh.record(i) for i in range(N_GENERIC)
    ]
