"""The match / compare / decompose commands (splatnlp/mechinterp/cli/match.py): one JSON
document, clear errors, bounded output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splatnlp.mechinterp.cli.app import main


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)  # exactly one JSON document, or json.loads fails


def test_match_json_is_a_match_report(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from splatnlp.mechinterp.analysis import MatchReport

    code, doc = run_json(capsys, "match", "18712", "--source", "ultra", "--top", "3")
    assert code == 0
    assert doc["schema_version"] == 1
    report = MatchReport.model_validate(doc)
    assert len(report.matches) == 3
    assert report.source_model == "ultra" and report.target_model == "full"
    assert report.n_candidates_tested == 2048


def test_match_output_file_holds_every_candidate(
    demo_contexts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.json"
    code, doc = run_json(capsys, "match", "18712", "--top", "2", "--output", str(out), "--no-decomposition")
    assert code == 0 and len(doc["matches"]) == 2
    full = json.loads(out.read_text())
    assert len(full["matches"]) == 2048
    assert [m["target_feature"] for m in full["matches"][:2]] == [m["target_feature"] for m in doc["matches"]]


def test_compare_and_item_fields(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "compare", "18712", "1024", "--source", "ultra")
    assert code == 0
    for key in ("jaccard_similarity", "activation_correlation", "shared_tokens", "source_only_tokens", "target_only_tokens"):
        assert key in doc


def test_decompose_limits_members_and_reports_total(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "decompose", "512", "--source", "full", "--limit", "2")
    assert code == 0
    assert len(doc["members"]) <= 2
    assert doc["n_members"] >= len(doc["members"])
    assert doc["source_model"] == "full" and doc["target_model"] == "ultra"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["match", "99999"], 2, r"out of range for 'ultra' \(0\.\.24575\)"),
        (["match", "5", "--top", "0"], 2, "n_top_matches must be an integer >= 1"),
        (["match", "5", "--source", "nope"], 3, "no context named 'nope'"),
        (["compare", "5"], 2, "required"),
        (["decompose", "abc"], 2, "invalid int value"),
    ],
)
def test_errors_are_json_with_exit_codes(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    import re

    got, doc = run_json(capsys, *argv)
    assert got == code
    assert set(doc["error"]) == {"type", "message", "hint"}
    assert re.search(message, doc["error"]["message"])


def test_text_output_is_short(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["match", "18712", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "ultra feature 18712" in out
    assert len(out.splitlines()) <= 12


@pytest.mark.parametrize("command", ["match", "compare", "decompose"])
def test_help_shows_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_closed_output_pipe_exits_quietly(demo_contexts: Path) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "splatnlp.mechinterp", "context", "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    proc.stdout.close()  # the reader goes away before the CLI writes anything
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141
    assert b"Traceback" not in err


def test_record_stores_the_verdicts_pairs(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--record links what the verdict found: a child's parent, a split parent's listed children,
    and nothing for a novel feature (no arbitrary 'unrelated' link)."""
    from splatnlp.mechinterp.demo.build import load_ground_truth
    from splatnlp.mechinterp.state import ResearchStore

    truth = load_ground_truth(demo_contexts)
    child = truth.ultra_class.index("child")
    code, doc = run_json(capsys, "match", str(child), "--source", "ultra", "--top", "3", "--record", "--no-decomposition")
    assert code == 0 and doc["verdict"]["parent"] is not None
    parent = doc["verdict"]["parent"]
    with ResearchStore() as store:
        links = store.links("ultra", child, with_report=False)
    assert [(lk.target_model, lk.target_feature) for lk in links] == [("full", parent)]
    assert any(w.startswith("recorded 1 link(s) ultra") for w in doc["warnings"])

    split = truth.full_class.index("split")
    code, doc = run_json(capsys, "match", str(split), "--source", "full", "--top", "5", "--record", "--no-decomposition")
    assert code == 0 and doc["verdict"]["label"] == "split_parent"
    children = doc["verdict"]["children"]
    listed = [m["target_feature"] for m in doc["matches"]]
    with ResearchStore() as store:
        recorded = [lk.target_feature for lk in store.links("full", split, with_report=False) if lk.source_model == "full"]
    assert sorted(recorded) == sorted(c for c in children if c in listed) and recorded
    assert all(lk.relation in ("source_split_by_target", "equivalent")
               for lk in ResearchStore().links("full", split, with_report=False) if lk.source_model == "full")
    if len(children) > len(recorded):
        assert any("not listed and not recorded" in w for w in doc["warnings"])

    novel = next(u for u, c in enumerate(truth.ultra_class) if c == "novel")
    code, doc = run_json(capsys, "match", str(novel), "--source", "ultra", "--record", "--no-decomposition")
    assert code == 0 and doc["verdict"]["label"] == "novel" and doc["is_unique"]
    with ResearchStore() as store:
        assert store.links("ultra", novel, with_report=False) == []
    assert any(w.startswith("nothing recorded: the verdict is novel") for w in doc["warnings"])
