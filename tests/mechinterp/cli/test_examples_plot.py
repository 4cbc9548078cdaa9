"""The ``examples``, ``compare --plot`` and ``plot pair | block`` commands
(splatnlp/mechinterp/cli/examples.py, cli/plot.py, cli/match.py) on the tiny demo: one JSON
document, the drawn values against a brute force (the Axes are caught as they are saved), errors
that name the bad value, and no torch on the query path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from splatnlp.mechinterp.analysis import FeatureExamples, FeatureMatcher, feature_examples  # noqa: E402
from splatnlp.mechinterp.analysis.align import plots  # noqa: E402
from splatnlp.mechinterp.cli import main  # noqa: E402
from splatnlp.mechinterp.context import MechInterpContext  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[3]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)  # exactly one JSON document


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The Axes each command saves, in order (``plots.save_figure`` still writes the file)."""
    saved: list = []
    real = plots.save_figure

    def catch(figure, path, **kwargs):
        saved.append(figure)
        return real(figure, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", catch)
    return saved


def column(ctx: MechInterpContext, feature: int) -> np.ndarray:
    return ctx.codes.csr[:, feature].toarray().ravel().astype(np.float64)


# -- examples ---------------------------------------------------------------------------------
def test_examples_json_is_the_api_result(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = run_json(
        capsys, "examples", "5127", "--source", "ultra", "--top", "4", "--tokens", "6"
    )
    assert code == 0 and doc.pop("schema_version") == 1
    got = FeatureExamples.model_validate(doc)
    assert got == feature_examples(
        MechInterpContext(demo_contexts / "ultra"), 5127, top=4, n_tokens=6
    )
    assert len(got.top) == 4 and len(got.tokens) == 6


def test_examples_text_is_a_table(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples", "361", "--source", "full", "--top", "3", "--tokens", "4"]) == 0
    out = capsys.readouterr().out
    want = feature_examples(MechInterpContext(demo_contexts / "full"), 361, top=3, n_tokens=4)
    assert out.startswith(f"full feature 361: active on {want.n_active:,} of 3,000 examples")
    for row in want.top:
        assert re.search(
            rf"^\s+{row.example_id}\s+{row.activation:.4g}\s+{row.weapon}\s", out, re.M
        )
    for t in want.tokens:
        assert re.search(rf"^\s+{t.token}\s+{t.n_active}\s", out, re.M)
    assert "weapons (" in out and len(out.splitlines()) <= 40


def test_examples_of_a_dead_feature_say_so(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ultra = MechInterpContext(demo_contexts / "ultra")
    dead = int(np.flatnonzero(np.diff(ultra.codes.csc.indptr) == 0)[0])
    code, doc = run_json(capsys, "examples", str(dead), "--source", "ultra")
    assert code == 0 and doc["n_active"] == 0 and doc["top"] == [] and "never active" in doc["note"]


# -- compare --plot and plot pair --------------------------------------------------------------
def test_compare_reports_the_overlap_and_plots_it(
    demo_contexts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], drawn: list
) -> None:
    out = tmp_path / "pair.png"
    code, doc = run_json(capsys, "compare", "5127", "1335", "--source", "ultra", "--plot", str(out))
    assert code == 0 and doc["plot"] == str(out) and out.read_bytes()[:8] == PNG_MAGIC
    s, t = (
        column(MechInterpContext(demo_contexts / "ultra"), 5127),
        column(MechInterpContext(demo_contexts / "full"), 1335),
    )
    assert doc["n_both"] == int(((s > 0) & (t > 0)).sum()) == doc["n_coactive"]
    assert doc["n_only_source"] == int(((s > 0) & (t == 0)).sum())
    assert doc["n_only_target"] == int(((s == 0) & (t > 0)).sum())
    assert doc["n_neither"] == int(((s == 0) & (t == 0)).sum())
    assert set(doc["overlap_examples"]) == {"both", "only_source", "only_target"}
    (ax,) = drawn
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.column_stack([s, t]))
    assert f"both {doc['n_both']:,}" in ax.get_title()
    # Without --plot the document is the comparison alone; the text names the overlap.
    assert main(["compare", "5127", "1335"]) == 0
    assert f"active on both {doc['n_both']}" in capsys.readouterr().out


def test_plot_pair_svg(
    demo_contexts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], drawn: list
) -> None:
    out = tmp_path / "new" / "pair.svg"  # a missing folder is created
    code, doc = run_json(
        capsys, "plot", "pair", "18712", "361", "--source", "ultra", "--out", str(out)
    )
    assert code == 0 and b"<svg" in out.read_bytes()[:500]
    s, t = (
        column(MechInterpContext(demo_contexts / "ultra"), 18712),
        column(MechInterpContext(demo_contexts / "full"), 361),
    )
    np.testing.assert_array_equal(drawn[0].collections[0].get_offsets(), np.column_stack([s, t]))
    assert (doc["n_both"], doc["n_only_source"], doc["n_only_target"], doc["n_neither"]) == (
        int(((s > 0) & (t > 0)).sum()),
        int(((s > 0) & (t == 0)).sum()),
        int(((s == 0) & (t > 0)).sum()),
        int(((s == 0) & (t == 0)).sum()),
    )
    assert (doc["source_model"], doc["target_model"]) == ("ultra", "full")


# -- plot block --------------------------------------------------------------------------------
def test_plot_block_with_children_draws_the_correlations(
    demo_contexts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], drawn: list
) -> None:
    out = tmp_path / "block.png"
    code, doc = run_json(
        capsys,
        "plot",
        "block",
        "--source",
        "full",
        "--features",
        "361",
        "1335",
        "--targets",
        "5127",
        "--with-children",
        "--out",
        str(out),
    )
    assert code == 0 and out.read_bytes()[:8] == PNG_MAGIC
    full, ultra = (
        MechInterpContext(demo_contexts / "full"),
        MechInterpContext(demo_contexts / "ultra"),
    )
    matcher = FeatureMatcher(full, ultra)
    members = [m.feature for f in (361, 1335) for m in matcher.find_decomposition(f).members]
    assert doc["rows"] == [361, 1335]
    assert doc["cols"] == list(dict.fromkeys([5127, *members])) and len(doc["cols"]) > 3
    brute = np.array(
        [
            [np.corrcoef(column(full, r), column(ultra, c))[0, 1] for c in doc["cols"]]
            for r in doc["rows"]
        ]
    )
    (ax,) = drawn
    image = np.ma.getdata(ax.images[0].get_array())
    # Pearson from the context's float64 sums and moments vs numpy's two-pass: same float64 data.
    np.testing.assert_allclose(image, brute, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.array(doc["values"], dtype=np.float64), brute, rtol=1e-5, atol=1e-6
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in doc["cols"]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["361", "1335"]


def test_plot_block_targets_only(
    demo_contexts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], drawn: list
) -> None:
    code, doc = run_json(
        capsys,
        "plot",
        "block",
        "--source",
        "ultra",
        "--features",
        "5127",
        "18712",
        "--targets",
        "1335",
        "361",
        "--out",
        str(tmp_path / "b.png"),
    )
    assert code == 0 and doc["rows"] == [5127, 18712] and doc["cols"] == [1335, 361]
    ultra, full = (
        MechInterpContext(demo_contexts / "ultra"),
        MechInterpContext(demo_contexts / "full"),
    )
    brute = np.array(
        [
            [np.corrcoef(column(ultra, r), column(full, c))[0, 1] for c in (1335, 361)]
            for r in (5127, 18712)
        ]
    )
    np.testing.assert_allclose(
        np.ma.getdata(drawn[0].images[0].get_array()), brute, rtol=1e-5, atol=1e-6
    )


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["examples", "24576", "--source", "ultra"],
            2,
            r"feature 24576 is out of range for 'ultra' \(0\.\.24575\)",
        ),
        (["examples", "5", "--top", "0"], 2, r"top must be an integer >= 1, got 0"),
        (["examples", "5", "--tokens", "-1"], 2, r"n_tokens must be an integer >= 1, got -1"),
        (["examples", "x"], 2, r"invalid int value: 'x'"),
        (["examples", "5", "--source", "nope"], 3, r"no context named 'nope'"),
        (
            ["plot", "pair", "99999", "3", "--out", "{tmp}/sub/p.png"],
            2,
            r"feature 99999 is out of range for 'ultra'",
        ),
        (
            ["plot", "pair", "5", "2048", "--out", "{tmp}/p.png"],
            2,
            r"feature 2048 is out of range for 'full' \(0\.\.2047\)",
        ),
        (
            ["plot", "pair", "5", "3", "--out", "{tmp}/p.pdf"],
            2,
            r"--out '.*p\.pdf' has suffix '\.pdf'",
        ),
        (
            ["plot", "pair", "5", "3", "--out", "{tmp}/afile/p.png"],
            2,
            r"'.*afile' is a file, not a folder",
        ),
        (
            ["plot", "pair", "5", "3", "--out", "{tmp}"],
            2,
            r"is a folder; expected an image file name",
        ),
        (
            ["plot", "block", "--features", "4096", "--targets", "3", "--out", "{tmp}/b.png"],
            2,
            r"feature 4096 is out of range for 'full' \(0\.\.2047\)",
        ),
        (
            ["plot", "block", "--features", "361", "--targets", "30000", "--out", "{tmp}/b.png"],
            2,
            r"feature 30000 is out of range for 'ultra' \(0\.\.24575\)",
        ),
        (
            ["plot", "block", "--features", "361", "--out", "{tmp}/b.png"],
            2,
            r"plot block needs columns",
        ),
        (
            ["compare", "5", "3", "--plot", "{tmp}/c.jpg"],
            2,
            r"--plot '.*c\.jpg' has suffix '\.jpg'",
        ),
        (
            ["compare", "5", "3000", "--plot", "{tmp}/c.png"],
            2,
            r"feature 3000 is out of range for 'full'",
        ),
    ],
)
def test_errors_name_the_value(
    demo_contexts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    (tmp_path / "afile").write_text("in the way")
    got, doc = run_json(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert got == code
    assert re.search(message, doc["error"]["message"]), doc
    # Nothing written, and no folder created by a refused command.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("command", [["examples"], ["plot"], ["plot", "pair"], ["plot", "block"]])
def test_help_shows_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0 and "example:" in capsys.readouterr().out


def test_query_path_imports_no_torch(demo_contexts: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from splatnlp.mechinterp.cli import main; "
        f"assert main(['examples', '5127', '--json']) == 0; "
        f"assert main(['plot', 'pair', '5127', '361', '--out', {str(tmp_path / 'p.png')!r}, '--json']) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "SPLATNLP_CONTEXTS_DIR": str(demo_contexts)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, capture_output=True)
