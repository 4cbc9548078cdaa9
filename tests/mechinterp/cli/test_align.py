"""Tests of the ``align`` command (splatnlp/mechinterp/cli/align.py) and of ``match
--alignment``, on the small planted pair (7 'ultra' x 40 'full' features), so each run takes about
a second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Pair, build_planted_pair

from splatnlp.mechinterp.analysis import load_tables
from splatnlp.mechinterp.cli.app import main
from splatnlp.mechinterp.cli.common import EXIT_BAD_INPUT, EXIT_MISSING, EXIT_OK

CHEAP = ["--null-features", "8", "--null-directions", "16"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return build_planted_pair(tmp_path_factory.mktemp("cli-pair"))


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_align_writes_tables_and_plots(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "alignment"
    code, doc = _run(capsys, ["align", str(pair.source.path), str(pair.target.path), "--out", str(out), "--json", "-q", *CHEAP])
    assert code == EXIT_OK
    assert doc["out"] == str(out)
    assert sorted(Path(p).name for p in doc["plots"]) == ["best_vs_null.png", "heatmap.png", "split_counts.png", "summary.png"]
    tables = load_tables(out)
    assert doc["report"]["class_counts_b"] == tables.report.class_counts_b
    assert doc["report"]["cka"] is None and tables.report.null.n_null_features_a > 0
    # Queries read the tables: the match report says what they hold about the feature.
    code, report = _run(
        capsys,
        ["match", "1", "--source", str(pair.source.path), "--target", str(pair.target.path), "--alignment", str(out), "--top", "2", "--json"],
    )
    assert code == EXIT_OK
    assert report["alignment"] == tables.lookup(pair.source.model_type, 1).model_dump(mode="json")


def test_align_text_cka_and_no_plots(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a"
    code = main(["align", str(pair.source.path), str(pair.target.path), "--out", str(out), "--cka", "--no-plots", "--examples", "200", "-q", *CHEAP])
    text = capsys.readouterr().out
    assert code == EXIT_OK
    assert "mean best correlation" in text and "linear CKA" in text and f"tables written to {out}" in text
    report = load_tables(out).report
    assert report.cka is not None and report.cka.n_examples == 200 == report.n_examples
    assert not (out / "plots").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--examples", "2"], "n_examples"),
        (["--device", "gpu7"], "unknown device 'gpu7'"),
        (["--chunk-size", "0"], "chunk_size"),
        (["--null-features", "-1"], "n_null_features"),
    ],
)
def test_align_bad_values(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    code, doc = _run(capsys, ["align", str(pair.source.path), str(pair.target.path), "--out", str(tmp_path / "x"), "--json", "-q", *extra])
    assert code == EXIT_BAD_INPUT
    assert message in doc["error"]["message"]
    assert not (tmp_path / "x").exists()


def test_align_refuses_a_foreign_folder_before_working(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.md").write_text("mine")
    code, doc = _run(capsys, ["align", str(pair.source.path), str(pair.target.path), "--out", str(foreign), "--json"])
    assert code == EXIT_BAD_INPUT
    assert "not an alignment folder" in doc["error"]["message"] and "--overwrite" not in doc["error"]["hint"]
    assert (foreign / "keep.md").read_text() == "mine"


def test_align_missing_context_and_missing_tables(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _run(capsys, ["align", str(tmp_path / "nowhere"), str(pair.target.path), "--out", str(tmp_path / "o"), "--json"])
    assert code == EXIT_MISSING
    code, doc = _run(
        capsys,
        ["match", "1", "--source", str(pair.source.path), "--target", str(pair.target.path), "--alignment", str(tmp_path / "none"), "--json"],
    )
    assert code == EXIT_MISSING and "no alignment report" in doc["error"]["message"]


def test_heatmap_features_draws_the_chosen_features_against_their_children(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from splatnlp.mechinterp.analysis.align import plots

    drawn: list = []
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, **kw: (drawn.append(fig), real(fig, path, **kw))[1])
    out = tmp_path / "alignment"
    # The planted pair's smaller side is the 7-feature 'ultra' source: its features are the rows.
    code, doc = _run(capsys, ["align", str(pair.source.path), str(pair.target.path), "--out", str(out), "--json",
                              "-q", "--no-plots", "--heatmap-features", "3", "4", "0", *CHEAP])
    assert code == EXIT_OK
    assert [Path(p).name for p in doc["plots"]] == ["heatmap_features.png"]
    tables = load_tables(out)
    _, large = tables.side("full")
    children = [int(u) for f in (3, 4, 0) for u in np.flatnonzero(large["parent"] == f)]
    assert len(children) >= 4  # 3 and 4 are split in the planted pair; 0 has no child
    (ax,) = drawn
    image = np.ma.getdata(ax.images[0].get_array())
    A, B = pair.source_codes, pair.target_codes
    with np.errstate(invalid="ignore", divide="ignore"):
        brute = np.corrcoef(A[:, [3, 4, 0]].T, B[:, children].T)[:3, 3:]
    assert sorted(children) == sorted(int(t.get_text()) for t in ax.get_xticklabels())
    order = [int(t.get_text()) for t in ax.get_xticklabels()]
    np.testing.assert_allclose(image, brute[:, [children.index(c) for c in order]], rtol=1e-5, atol=1e-6)


def test_heatmap_features_out_of_range_is_refused_before_the_pass(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "alignment"
    code, doc = _run(capsys, ["align", str(pair.source.path), str(pair.target.path), "--out", str(out), "--json",
                              "--heatmap-features", "7"])
    assert code == EXIT_BAD_INPUT
    assert "--heatmap-features: feature 7 is out of range" in doc["error"]["message"] and not out.exists()
