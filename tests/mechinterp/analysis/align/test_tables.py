"""Tests of splatnlp/mechinterp/analysis/tables.py: lookups from saved alignment tables, the
matcher reading them, and the atomic folder write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import Pair, random_examples, random_sae

from splatnlp.mechinterp.analysis import AlignedFeature, FeatureMatcher, MatchReport
from splatnlp.mechinterp.analysis.align.dictionary import AlignOptions, align_contexts
from splatnlp.mechinterp.analysis.align.tables import load_tables, save_tables
from splatnlp.mechinterp.context import build_context

CHEAP = dict(n_null_features=8, n_null_directions=16)


@pytest.fixture(scope="module")
def saved(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tables = align_contexts(pair.source, pair.target, options=AlignOptions(keep_matrices=True, **CHEAP))
    return save_tables(tables, tmp_path_factory.mktemp("tables") / "aligned")


def test_lookup_matches_the_arrays(pair: Pair, saved: Path) -> None:
    tables = load_tables(saved)
    small, large = pair.source.model_type, pair.target.model_type  # 7 vs 40 features
    assert tables.report.larger_side == "b"
    parent = tables.b["parent"]
    for feature in range(pair.source.n_features):
        entry = tables.lookup(small, feature)
        kids = np.flatnonzero(parent == feature)
        assert sorted(entry.children) == kids.tolist()
        assert entry.children_scores == sorted(entry.children_scores, reverse=True)
        assert entry.parent is None and entry.class_label == tables.a["class_label"][feature]
        best = entry.best["activation_correlation"]
        if tables.a["best_activation_correlation_index"][feature] < 0:
            assert best is None
        else:
            assert best.feature == tables.a["best_activation_correlation_index"][feature]
        # Containments named from the feature's side: P(other | this) is P(b | a) for side a.
        p = entry.best["p_target_given_source"]
        assert p is None or p.score == tables.a["best_p_target_given_source_score"][feature]
    for feature in range(pair.target.n_features):
        entry = tables.lookup(large, feature)
        assert entry.children == []
        expected = int(parent[feature])
        assert entry.parent == (None if expected < 0 else expected)
        p = entry.best["p_target_given_source"]
        assert p is None or p.score == tables.b["best_p_source_given_target_score"][feature]
    entry = tables.lookup(small, 1)
    assert AlignedFeature.model_validate_json(entry.model_dump_json()) == entry
    assert entry.alignment == str(saved)
    for bad in (-1, pair.source.n_features, 2.0, True):
        with pytest.raises(ValueError, match=f"feature {bad!r} is out of range"):
            tables.lookup(small, bad)


def test_matcher_reads_saved_tables(pair: Pair, saved: Path) -> None:
    matcher = FeatureMatcher(pair.source, pair.target, alignment=saved)
    report = matcher.find_matches(1, n_top_matches=3)
    assert report.alignment == matcher.aligned(1) == load_tables(saved).lookup(pair.source.model_type, 1)
    assert "alignment:" in report.summary()
    assert MatchReport.model_validate_json(report.model_dump_json()) == report
    # The reverse direction reads the other side of the same tables.
    back = FeatureMatcher(pair.target, pair.source, alignment=saved).find_matches(0, n_top_matches=1)
    assert back.alignment.model == pair.target.model_type
    # Without an alignment: no field, and aligned() says how to get one.
    plain = FeatureMatcher(pair.source, pair.target)
    assert plain.find_matches(1, n_top_matches=1).alignment is None
    with pytest.raises(ValueError, match="has no alignment"):
        plain.aligned(1)


def test_matcher_refuses_tables_of_other_contexts(pair: Pair, saved: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 60
    examples = random_examples(rng, n)
    codes = sp.csr_matrix(rng.random((n, 4)).astype(np.float32))
    a = build_context(tmp_path / "a", sae=random_sae(1, n_features=4), examples=examples, codes=codes, model_type="ultra", progress=False)
    b = build_context(tmp_path / "b", sae=random_sae(2, n_features=4), examples=examples, codes=codes, model_type="full", progress=False)
    with pytest.raises(ValueError, match="align these contexts again"):
        FeatureMatcher(a, b, alignment=saved)
    with pytest.raises(FileNotFoundError, match="no alignment report"):
        FeatureMatcher(pair.source, pair.target, alignment=tmp_path / "nowhere")
    # Same example set, but no such direction in the tables (ultra -> ultra).
    with pytest.raises(ValueError, match="aligns 'ultra' with 'full'; it has no 'ultra' -> 'ultra' direction"):
        FeatureMatcher(pair.source, pair.source, alignment=saved)


def test_save_replaces_whole_folder_or_nothing(pair: Pair, saved: Path, tmp_path: Path) -> None:
    tables = load_tables(saved)
    out = tmp_path / "out"
    save_tables(tables, out)
    (out / "stale.txt").write_text("from an older run")
    save_tables(tables, out)
    assert not (out / "stale.txt").exists()  # replaced whole, not merged

    def broken(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk full")

    save_tables(tables, out, files={"plots/extra.txt": lambda p: p.write_text("ok")})
    assert (out / "plots" / "extra.txt").read_text() == "ok"
    with pytest.raises(RuntimeError, match="disk full"):
        save_tables(tables, out, files={"plots/bad.png": broken})
    assert (out / "plots" / "extra.txt").is_file() and not (out / "plots" / "bad.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
    assert load_tables(out).report == tables.report

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.md").write_text("mine")
    with pytest.raises(FileExistsError, match="not an alignment folder"):
        save_tables(tables, foreign)
    assert (foreign / "notes.md").read_text() == "mine"
    html = tmp_path / "html-report"  # an HTML report folder has a report.json of its own
    html.mkdir()
    (html / "report.json").write_text('{"schema_version": 1, "kind": "alignment"}')
    (html / "index.html").write_text("<html></html>")
    with pytest.raises(FileExistsError, match="not an alignment folder"):
        save_tables(tables, html)
    assert (html / "index.html").read_text() == "<html></html>"


def test_features_csv_has_the_documented_columns_and_the_arrays_values(pair: Pair, saved: Path) -> None:
    import csv

    from splatnlp.mechinterp.analysis.align.tables import FEATURE_COLUMNS

    tables = load_tables(saved)
    with (saved / "features.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == FEATURE_COLUMNS
        rows = list(reader)
    r = tables.report
    assert len(rows) == r.n_features_a + r.n_features_b
    # The report's confidence counts are the larger side's rows, by class and level.
    larger = r.a_model if r.larger_side == "a" else r.b_model
    tally: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["model"] == larger and row["class"] != "dead":
            level = tally.setdefault(row["class"], {"high": 0, "low": 0})
            level[row["confidence"]] += 1
    assert {c: n for c, n in r.confidence_counts.items() if n["high"] + n["low"]} == tally
    assert "confidence, high / low" in r.summary()
    assert {row["model"] for row in rows} == {r.a_model, r.b_model}
    for row in rows:
        looked = tables.lookup(row["model"], int(row["feature"]))
        assert row["class"] == looked.class_label
        assert row["parent"] == ("" if looked.parent is None else str(looked.parent))
        if looked.parent is not None:
            assert float(row["parent_score"]) == looked.parent_score  # repr round-trips exactly
            cosine = row["parent_decoder_cosine"]
            assert (cosine == "" and looked.parent_decoder_cosine is None) or float(cosine) == looked.parent_decoder_cosine
        assert int(row["n_children"]) == len(looked.children)
        assert row["confidence"] == (looked.confidence or "")
        assert int(row["count"]) == looked.count
        for metric, best in looked.best.items():
            assert row[f"best_{metric}"] == ("" if best is None else str(best.feature))
            if best is not None:
                assert float(row[f"best_{metric}_score"]) == best.score


def test_readme_and_skill_document_every_features_csv_column() -> None:
    from splatnlp.mechinterp.analysis.align.tables import FEATURE_COLUMNS

    root = Path(__file__).resolve().parents[4]
    for doc in (root / "README.md", root / "skills" / "mechinterp-crossmodel-matcher" / "SKILL.md"):
        text = doc.read_text()
        assert "features.csv" in text, doc
        for column in (c for c in FEATURE_COLUMNS if not c.startswith("best_")):
            assert f"`{column}`" in text, (doc, column)
        assert "best_<metric>" in text and "best_<metric>_score" in text, doc


@pytest.mark.parametrize("array", ["parent_decoder_cosine", "siblings_inside"])
def test_tables_without_a_newer_array_are_refused_with_the_rebuild_command(saved: Path, tmp_path: Path, array: str) -> None:
    import shutil

    old = Path(shutil.copytree(saved, tmp_path / "old"))
    (old / "b" / f"{array}.npy").unlink()  # what a folder from before that array looks like
    with pytest.raises(FileNotFoundError, match=r"older version of splatnlp-mechinterp; rebuild it with `splatnlp-mechinterp align .* --out "):
        load_tables(old)


def test_tables_with_the_old_containment_names_are_refused_with_the_rebuild_command(saved: Path, tmp_path: Path) -> None:
    """Folders written when the containments were ``p_b_given_a`` / ``p_a_given_b``."""
    import shutil

    old = Path(shutil.copytree(saved, tmp_path / "old"))
    for side in ("a", "b"):
        for new, legacy in (("p_target_given_source", "p_b_given_a"), ("p_source_given_target", "p_a_given_b")):
            for part in ("index", "score"):
                (old / side / f"best_{new}_{part}.npy").rename(old / side / f"best_{legacy}_{part}.npy")
    with pytest.raises(FileNotFoundError, match=r"best_p_target_given_source_index\.npy.*rebuild it with `splatnlp-mechinterp align "):
        load_tables(old)


def test_every_none_of_a_lookup_says_why(pair: Pair, saved: Path, tiny_alignment) -> None:
    # Every feature of the planted pair, and one of every class on each side of the tiny demo.
    def unexplained(a: AlignedFeature) -> list[str]:
        top = [n for n in type(a).model_fields if getattr(a, n) is None and n not in a.undefined]
        return top + [f"best.{m}" for m, b in a.best.items() if b is None and f"best.{m}" not in a.undefined]

    tables = load_tables(saved)
    for ctx in (pair.source, pair.target):
        for feature in range(ctx.n_features):
            assert unexplained(tables.lookup(ctx.model_type, feature)) == [], (ctx.model_type, feature)
    for key, model in (("a", tiny_alignment.report.a_model), ("b", tiny_alignment.report.b_model)):
        labels = getattr(tiny_alignment, key)["class_label"].astype(str)
        for label in sorted(set(labels)):
            found = tiny_alignment.lookup(model, int(np.flatnonzero(labels == label)[0]))
            assert unexplained(found) == [], (model, label)
            if key == tiny_alignment.report.larger_side and found.parent is None:  # names the class
                assert label in found.undefined["parent"]
