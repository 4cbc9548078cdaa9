"""The match / compare / decompose commands (splatnlp/mechinterp/cli/match.py): one JSON
document, clear errors, bounded output."""

from __future__ import annotations

import io
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
        (["compare", "5"], 2, "a source and at least one target"),
        (["decompose", "abc"], 2, "feature id must be an integer, got 'abc'"),
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
    assert any(w.startswith("no link recorded: the verdict is novel; recorded finding #") for w in doc["warnings"])
    with ResearchStore() as store:  # the finding says so, with the evidence, on that feature
        (finding,) = store.findings("ultra", novel)
        assert finding.kind == "no_counterpart"


def test_match_answers_several_features_in_one_document(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "match", "5127", "99999", "abc", "9912", "--top", "2", "--no-decomposition")
    assert code == 2  # some queries failed; each failure is in its place, the rest are answered
    assert doc["n_queries"] == 4 and doc["n_errors"] == 2
    good, bad, word, novel = doc["reports"]
    assert good["source_feature"] == 5127 and len(good["matches"]) == 2 and good["verdict"]["label"]
    assert bad == {"feature": 99999, "error": "feature 99999 is out of range for 'ultra' (0..24575)", "error_type": "ValueError"}
    assert word["error_type"] == "TypeError" and "'abc'" in word["error"]
    assert novel["source_feature"] == 9912
    # The same numbers as one query at a time.
    _, single = run_json(capsys, "match", "5127", "--top", "2", "--no-decomposition")
    assert [m["target_feature"] for m in single["matches"]] == [m["target_feature"] for m in good["matches"]]
    assert single["verdict"] == good["verdict"]


def test_match_streams_json_lines_from_stdin_and_a_file(
    demo_contexts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('5127\n{"feature": 361}\n\n# a comment\nxyz\n'))
    ids = tmp_path / "ids.txt"
    ids.write_text("18712\n")
    code = main(["match", "-", "--features-file", str(ids), "--jsonl", "--top", "1", "--no-decomposition"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2 and len(lines) == 4
    assert [d.get("source_feature") for d in lines] == [5127, 361, None, 18712]
    assert lines[2]["error"].startswith("stdin line 5: 'xyz' is not a feature id")
    assert all(d["schema_version"] == 1 for d in lines)
    code = main(["match", "--features-file", str(tmp_path / "missing.txt"), "--json"])
    err = json.loads(capsys.readouterr().out)["error"]
    assert code == 2 and "missing.txt" in err["message"] and "does not exist" in err["message"]
    code = main(["match", "5127", "361", "--output", str(tmp_path / "o.json"), "--json"])
    assert code == 2 and "--output takes one feature" in capsys.readouterr().out
    assert not (tmp_path / "o.json").exists()


def test_decompose_several_features_keeps_each_count(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "decompose", "361", "362", "--source", "full", "--limit", "1")
    assert code == 0 and doc["n_errors"] == 0
    for d in doc["reports"]:
        assert len(d["members"]) <= 1 and d["n_members"] >= len(d["members"])
    _, one = run_json(capsys, "decompose", "361", "--source", "full")
    assert doc["reports"][0]["n_members"] == one["n_members"] == len(one["members"])


def test_record_needs_the_verdict(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from splatnlp.mechinterp.state import ResearchStore

    code, doc = run_json(capsys, "match", "5127", "--no-verdict", "--record", "--no-decomposition")
    assert code == 2 and "--no-verdict skipped it" in doc["error"]["message"]
    with ResearchStore() as store:
        assert store.links("ultra", 5127, with_report=False) == []
    code, doc = run_json(capsys, "match", "5127", "--no-verdict", "--no-decomposition")
    assert code == 0 and doc["verdict"] is None and doc["is_unique"] is False


def test_match_without_ids_says_how_to_give_them(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "match")
    assert code == 2 and doc["error"]["message"] == "no feature ids given"
    assert "--features-file" in doc["error"]["hint"]


def test_an_id_that_fails_later_names_its_file_line(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("5127\n# out of range next\n99999\n")
    for command in (["match", "--no-decomposition", "--top", "1"], ["decompose", "--source", "ultra"]):
        code, doc = run_json(capsys, *command, "--features-file", str(ids))
        assert code == 2 and doc["n_errors"] == 1 and doc["n_queries"] == 2
        assert doc["reports"][1]["error"] == f"{ids} line 3: feature 99999 is out of range for 'ultra' (0..24575)"
        assert doc["reports"][0]["source_feature"] == 5127


def test_compare_takes_several_targets_and_pairs_from_stdin_or_a_file(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, doc = run_json(capsys, "compare", "5127", "1126", "675")
    assert code == 0 and doc["n_queries"] == 2 and doc["n_errors"] == 0
    for item, target in zip(doc["reports"], (1126, 675), strict=True):
        _, one = run_json(capsys, "compare", "5127", str(target))
        one.pop("schema_version")  # the batch document carries it once
        assert item == one  # the shared scoring pass gives the single call's numbers
    monkeypatch.setattr("sys.stdin", io.StringIO('5127 1126\n\n{"source": 18712, "target": 1126}\nxyz\n[5127, 99999]\n'))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("5127, 675\n")
    code = main(["compare", "-", "--pairs-file", str(pairs), "--jsonl"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2 and len(lines) == 5
    assert [(d.get("source_feature"), d.get("target_feature")) for d in lines] == [
        (5127, 1126), (18712, 1126), (None, None), (None, None), (5127, 675),
    ]  # fmt: skip
    assert lines[2]["error"].startswith("stdin line 4: 'xyz' is not a pair of feature ids")
    assert lines[3]["error"] == "stdin line 5: feature 99999 is out of range for 'full' (0..2047)"
    assert lines[3]["feature"] == [5127, 99999]


def test_compare_refuses_a_lone_id_a_missing_file_and_a_batch_plot(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, doc = run_json(capsys, "compare", "5127")
    assert code == 2 and "a source and at least one target" in doc["error"]["message"]
    code, doc = run_json(capsys, "compare", "--pairs-file", str(tmp_path / "none.txt"))
    assert code == 2 and "none.txt" in doc["error"]["message"] and "does not exist" in doc["error"]["message"]
    out = tmp_path / "pair.png"
    code, doc = run_json(capsys, "compare", "5127", "1126", "675", "--plot", str(out))
    assert code == 2 and doc["error"]["message"] == "--plot takes one pair" and not out.exists()
