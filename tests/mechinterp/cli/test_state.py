"""Tests of splatnlp/mechinterp/cli/state.py: the ``state`` commands, driven through
``app.main`` and its error mapping, the group on a parser of its own, and the command lines of
skills/mechinterp-state/SKILL.md."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import other_example_set

import splatnlp.mechinterp.cli.app as app
from splatnlp.mechinterp.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_MISSING,
    EXIT_OK,
    JSON_SCHEMA_VERSION,
    CLIError,
    Parser,
)
from splatnlp.mechinterp.cli.state import add_state_commands
from splatnlp.mechinterp.state import SCHEMA_VERSION, ResearchStore

ROOT = Path(__file__).resolve().parents[3]
SKILL = ROOT / "skills" / "mechinterp-state" / "SKILL.md"

Run = Callable[..., tuple[int, str, str]]


def test_the_group_builds_on_its_own() -> None:
    parser = Parser(prog="splatnlp-mechinterp")
    add_state_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["state", "--store", "x.sqlite", "link", "list", "--json"])
    assert callable(args.func) and args.store == "x.sqlite" and args.json
    with pytest.raises(CLIError, match=r"invalid choice: 'medium'"):
        parser.parse_args(["state", "show", "1", "--model", "medium"])


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv) -> (exit code, stdout, stderr)`` through ``app.main`` and its error mapping."""

    def _run(*argv: str) -> tuple[int, str, str]:
        code = app.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.sqlite"
    monkeypatch.setenv("SPLATNLP_STORE", str(path))
    return path


def _json(run: Run, *argv: str) -> dict[str, Any]:
    code, out, err = run(*argv, "--json")
    assert code == EXIT_OK, (out, err)
    doc = json.loads(out)  # exactly one document, or this raises
    assert doc["schema_version"] == JSON_SCHEMA_VERSION
    return doc


def _error(run: Run, code: int, *argv: str) -> dict[str, Any]:
    got, out, _ = run(*argv, "--json")
    assert got == code, out
    return json.loads(out)["error"]


def test_workflow_in_json(run: Run, db: Path) -> None:
    f = ["18712", "--model", "ultra"]
    doc = _json(run, "state", "label", *f, "SSU stacker")
    assert doc == {
        "schema_version": 1,
        "store": str(db),
        "feature_id": 18712,
        "model_type": "ultra",
        "label": "SSU stacker",
    }
    h = _json(
        run,
        "state",
        "hypothesis",
        "add",
        *f,
        "--statement",
        "fires on SSU",
        "--tag",
        "a",
        "--tag",
        "b",
    )
    assert h["hypothesis"]["id"] == "h001" and h["hypothesis"]["tags"] == ["a", "b"]
    assert h["hypothesis"]["confidence"] == 0.5 and h["hypothesis"]["status"] == "proposed"
    h2 = _json(
        run,
        "state",
        "hypothesis",
        "add",
        *f,
        "--statement",
        "s2",
        "--confidence",
        "0.2",
        "--status",
        "testing",
    )
    assert (h2["hypothesis"]["id"], h2["hypothesis"]["status"]) == ("h002", "testing")
    e = _json(
        run,
        "state",
        "evidence",
        "add",
        *f,
        "--experiment",
        "match-full",
        "--summary",
        "r=0.82",
        "--strength",
        "strong",
        "--metric",
        "activation_correlation=0.82",
        "--metric",
        "n=3",
        "--result-path",
        "out/r.json",
        "--supports",
        "h001",
    )
    assert e["evidence"]["id"] == "e001"
    assert e["evidence"]["key_metrics"] == {"activation_correlation": 0.82, "n": 3.0}
    assert e["evidence"]["result_path"] == "out/r.json"
    _json(
        run,
        "state",
        "evidence",
        "add",
        *f,
        "--experiment",
        "x",
        "--summary",
        "y",
        "--strength",
        "weak",
    )
    u = _json(
        run,
        "state",
        "hypothesis",
        "update",
        *f,
        "h002",
        "--status",
        "refuted",
        "--confidence",
        "0.05",
        "--refuting",
        "e002",
        "--supporting",
        "e001",
    )
    assert u["hypothesis"]["status"] == "refuted" and u["hypothesis"]["confidence"] == 0.05
    assert u["hypothesis"]["refuting_evidence"] == ["e002"]
    assert u["hypothesis"]["supporting_evidence"] == ["e001"]

    with ResearchStore(db) as s:
        s.record_link(
            {
                "source_model": "full",
                "source_feature": 512,
                "target_model": "ultra",
                "target_feature": 18712,
                "relation": "source_split_by_target",
                "scores": {"activation_correlation": 0.7},
                "report": {"big": "x"},
                "recorded_by": "t",
            }
        )
    show = _json(run, "state", "show", *f)["state"]
    assert show["label"] == "SSU stacker"
    assert [x["id"] for x in show["hypotheses"]] == ["h001", "h002"]
    assert show["hypotheses"][0]["supporting_evidence"] == ["e001"]
    assert [x["id"] for x in show["evidence"]] == ["e001", "e002"]
    assert [x["action"] for x in show["history"]] == [
        "label_set",
        "hypothesis_added",
        "hypothesis_added",
        "evidence_added",
        "evidence_added",
        "hypothesis_updated",
        "link_recorded",  # the link's target side
    ]
    (link,) = show["links"]  # recorded with ultra 18712 as the target
    assert link["source_feature"] == 512 and link["report"] is None
    full = _json(run, "state", "show", *f, "--with-reports")["state"]
    assert full["links"][0]["report"] == {"big": "x"}

    links = _json(run, "state", "link", "list", "--model", "ultra", "--feature", "18712")
    assert links["n_links"] == 1 and links["links"][0]["relation"] == "source_split_by_target"
    assert _json(run, "state", "link", "list", "--feature", "3")["n_links"] == 0


def test_text_output(run: Run, db: Path) -> None:
    f = ["7", "--model", "full"]
    code, out, _ = run("state", "hypothesis", "add", *f, "--statement", "fires on Ink Saver")
    assert (
        code == 0
        and out == "added h001 to full feature 7 (proposed, confidence 0.50): fires on Ink Saver\n"
    )
    run(
        "state",
        "evidence",
        "add",
        *f,
        "--experiment",
        "sweep",
        "--summary",
        "rises",
        "--strength",
        "moderate",
    )
    code, out, _ = run(
        "state", "hypothesis", "update", *f, "h001", "--status", "supported", "--supporting", "e001"
    )
    assert out == "updated h001 of full feature 7: supported, confidence 0.50; supporting e001\n"
    code, out, _ = run("state", "show", *f)
    assert out.splitlines() == [
        "full feature 7: unlabeled  (1 hypotheses, 1 evidence, 0 links)",
        "  h001 supported  0.50  fires on Ink Saver",
        "  e001 moderate   sweep: rises",
    ]
    code, out, _ = run("state", "show", "8", "--model", "full")
    assert "nothing recorded yet" in out
    code, out, _ = run("state", "link", "list")
    assert out == "0 links\n"


def test_store_option_before_or_after_the_action(run: Run, tmp_path: Path, db: Path) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _json(run, "state", "--store", str(a), "label", "1", "--model", "full", "A")
    _json(run, "state", "label", "1", "--model", "full", "B", "--store", str(b))
    _json(run, "state", "label", "1", "--model", "full", "default")
    for path, label in ((a, "A"), (b, "B"), (db, "default")):
        with ResearchStore(path) as s:
            assert s.feature_state(1, "full").label == label


def test_export_formats_and_output_file(run: Run, db: Path, tmp_path: Path) -> None:
    _json(run, "state", "hypothesis", "add", "5", "--model", "full", "--statement", "x | y")
    doc = _json(run, "state", "export")
    assert doc["format"] == "json" and doc["content"]["features"][0]["feature_id"] == 5
    code, out, _ = run("state", "export", "--format", "json")
    assert json.loads(out)["features"][0]["hypotheses"][0]["statement"] == "x | y"
    code, out, _ = run(
        "state", "export", "--format", "markdown", "--feature", "5", "--model", "full"
    )
    assert out.startswith("# full feature 5: unlabeled\n") and "x \\| y" in out
    one = _json(run, "state", "export", "--feature", "5", "--model", "full")["content"]
    assert one["feature_id"] == 5 and one["links"] == []
    target = tmp_path / "out" / "all.md"
    doc = _json(run, "state", "export", "--format", "markdown", "--output", str(target))
    assert doc["output"] == str(target) and doc["n_bytes"] == target.stat().st_size > 0
    assert target.read_text().startswith("# full feature 5")


UPSTREAM = {
    "feature_id": 512,
    "model_type": "full",
    "feature_label": "SSU",
    "hypotheses": [{"id": "h001", "statement": "Detects SSU stacking", "confidence": 0.7}],
    "evidence_index": [
        {
            "id": "e001",
            "experiment_id": "sweep",
            "result_path": "r.json",
            "summary": "rises",
            "strength": "strong",
            "supports_hypotheses": ["h001"],
            "timestamp": "2025-01-10T09:18:00",
        }
    ],
    "history": [{"timestamp": "2025-01-10T09:00:00", "action": "state_created", "details": "x"}],
}


def test_import_upstream(run: Run, db: Path, tmp_path: Path) -> None:
    one = tmp_path / "feature_512_full.json"
    one.write_text(json.dumps(UPSTREAM))
    two = tmp_path / "feature_3_ultra.json"
    two.write_text(json.dumps({"feature_id": 3, "model_type": "ultra"}))
    doc = _json(run, "state", "import-upstream", str(one), str(two))
    assert doc["imported"] == [
        {
            "file": str(one),
            "feature_id": 512,
            "model_type": "full",
            "label": "SSU",
            "n_hypotheses": 1,
            "n_evidence": 1,
            "n_history": 2,
        },
        {
            "file": str(two),
            "feature_id": 3,
            "model_type": "ultra",
            "label": None,
            "n_hypotheses": 0,
            "n_evidence": 0,
            "n_history": 1,
        },
    ]
    err = _error(run, EXIT_BAD_INPUT, "state", "import-upstream", str(one))
    assert "already has research state" in err["message"] and "--replace" in err["message"]
    _json(run, "state", "import-upstream", str(one), "--replace")
    with ResearchStore(db) as s:
        assert s.feature_state(512, "full").hypotheses[0].supporting_evidence == ["e001"]


def test_import_upstream_validates_every_file_before_writing(
    run: Run, db: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(UPSTREAM))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({**UPSTREAM, "feature_id": 9, "hypotheses": [{"id": "h1", "statement": "s"}]})
    )
    err = _error(run, EXIT_BAD_INPUT, "state", "import-upstream", str(good), str(bad))
    assert re.search(
        r"bad\.json' is malformed: hypotheses\[0\]\.id: String should match", err["message"]
    )
    err = _error(
        run, EXIT_MISSING, "state", "import-upstream", str(good), str(tmp_path / "nope.json")
    )
    assert "nope.json" in err["message"] and "path" in err["hint"]
    err = _error(run, EXIT_BAD_INPUT, "state", "import-upstream", str(good), str(good))
    assert "both hold full feature 512" in err["message"]
    with ResearchStore(db) as s:
        assert s.features() == []


EVIDENCE_ADD = ["evidence", "add", "1", "--model", "full", "--experiment", "x", "--summary", "y", "--strength", "weak"]


@pytest.mark.parametrize(
    ("argv", "code", "pattern"),
    [
        (
            ["hypothesis", "update", "1", "--model", "full", "h009"],
            EXIT_MISSING,
            r"no hypothesis 'h009' for full feature 1; known: \['h001'\]",
        ),
        (
            ["hypothesis", "update", "1", "--model", "full", "h001", "--supporting", "e004"],
            EXIT_MISSING,
            r"no evidence 'e004' for full feature 1; known: \[\]",
        ),
        (
            [*EVIDENCE_ADD, "--supports", "h002"],
            EXIT_MISSING,
            r"no hypothesis 'h002'",
        ),
        (
            ["hypothesis", "update", "1", "--model", "full", "h1"],
            EXIT_BAD_INPUT,
            r"hypothesis id 'h1' is malformed",
        ),
        (
            [
                "hypothesis",
                "add",
                "1",
                "--model",
                "full",
                "--statement",
                "s",
                "--confidence",
                "1.5",
            ],
            EXIT_BAD_INPUT,
            r"(?s)confidence.*less than or equal to 1",
        ),
        (
            ["hypothesis", "add", "1", "--model", "medium", "--statement", "s"],
            EXIT_BAD_INPUT,
            r"argument --model: invalid choice: 'medium'",
        ),
        (
            ["hypothesis", "add", "-1", "--model", "full", "--statement", "s"],
            EXIT_BAD_INPUT,
            r"feature -1 is not a feature id",
        ),
        (
            [*EVIDENCE_ADD[:-1], "huge"],
            EXIT_BAD_INPUT,
            r"argument --strength: invalid choice",
        ),
        (
            [*EVIDENCE_ADD, "--metric", "r"],
            EXIT_BAD_INPUT,
            r"--metric 'r' is not NAME=VALUE",
        ),
        (
            [*EVIDENCE_ADD, "--metric", "r=high"],
            EXIT_BAD_INPUT,
            r"'high' is not a number",
        ),
        (["export", "--feature", "1"], EXIT_BAD_INPUT, r"pass --feature and --model together"),
        (["link", "list", "--limit", "-1"], EXIT_BAD_INPUT, r"limit -1 is negative"),
    ],
)
def test_errors_map_to_exit_codes(
    run: Run, db: Path, argv: list[str], code: int, pattern: str
) -> None:
    _json(run, "state", "hypothesis", "add", "1", "--model", "full", "--statement", "claim")
    before = _history_len(db)
    err = _error(run, code, "state", *argv)
    assert re.search(pattern, err["message"]), err
    if code == EXIT_MISSING:
        assert "state show" in err["hint"]
    assert _history_len(db) == before  # nothing was written


def _history_len(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM history").fetchone()[0]


def test_newer_store_is_refused(run: Run, db: Path) -> None:
    ResearchStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_meta SET value = '9' WHERE key = 'schema_version'")
    err = _error(run, EXIT_BAD_INPUT, "state", "show", "1", "--model", "full")
    assert err["type"] == "StoreVersionError"
    assert (
        str(db) in err["message"]
        and "schema version 9" in err["message"]
        and f"up to {SCHEMA_VERSION}" in err["message"]
    )


COMMANDS = [
    ["state"],
    ["state", "show"],
    ["state", "label"],
    ["state", "hypothesis"],
    ["state", "hypothesis", "add"],
    ["state", "hypothesis", "update"],
    ["state", "evidence"],
    ["state", "evidence", "add"],
    ["state", "link"],
    ["state", "link", "list"],
    ["state", "export"],
    ["state", "import-upstream"],
    ["state", "transfer-labels"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_has_an_example_that_parses(run: Run, command: list[str]) -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit) as exit_info:
        app.build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    text = buffer.getvalue()
    assert "example:\n" in text
    examples = [
        line.strip()
        for line in text.split("example:\n", 1)[1].splitlines()
        if line.strip().startswith("splatnlp-mechinterp state")
    ]
    assert examples, text
    for example in examples:
        parsed = app.build_parser().parse_args(shlex.split(example)[1:])
        assert callable(parsed.func)


def _skill_command_lines() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", SKILL.read_text(), re.S | re.M)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("splatnlp-mechinterp")
    ]


def test_skill_command_lines_run_in_order_on_a_fresh_store(
    run: Run, isolated_env: Path, demo_contexts: Path
) -> None:
    lines = _skill_command_lines()
    assert len(lines) >= 6
    for line in lines:
        code, out, err = run(*shlex.split(line)[1:])
        assert code == EXIT_OK, (line, out, err)
        if "--json" in line:
            json.loads(out)
    with ResearchStore(isolated_env / "research_state.sqlite") as s:
        state = s.feature_state(18712, "ultra")
        assert state.hypothesis("h001").status == "supported"
        assert state.hypothesis("h001").supporting_evidence == ["e001"]
        # The findings section: a split, a feature without counterpart, a transferred label.
        assert [f.kind for f in s.findings("full", 361)] == ["decomposition"]
        assert [f.kind for f in s.findings("ultra", 12)] == ["no_counterpart"]
        ((target, (label, provenance)),) = s.labels("full").items()
        assert label == "Swim Speed Up stacker" and provenance.startswith("from ultra 18712, r = ")


# -- transfer-labels -------------------------------------------------------------------------
def test_transfer_labels_dry_run_then_apply(run: Run, db: Path, demo_contexts: Path) -> None:
    from splatnlp.mechinterp.demo.build import load_ground_truth

    truth = load_ground_truth(demo_contexts)
    child, novel = truth.ultra_class.index("child"), truth.ultra_class.index("novel")
    _json(run, "state", "label", str(child), "--model", "ultra", "Swim Speed stacker")
    _json(run, "state", "label", str(novel), "--model", "ultra", "no twin")
    dry = _json(run, "state", "transfer-labels", "--from", "ultra", "--to", "full")
    assert dry["dry_run"] and dry["n_labelled"] == 2 and dry["n_applied"] == 0
    (p,) = dry["proposals"]
    assert p["source_feature"] == child and p["action"] == "set" and p["applied"] is False
    assert p["provenance"] == f"from ultra {child}, r = {p['correlation']:.2f}, {p['verdict_label']}"
    assert [k["source_feature"] for k in dry["skipped"]] == [novel]
    assert _json(run, "state", "show", str(p["target_feature"]), "--model", "full")["state"]["label"] is None

    code, out, _ = run("state", "transfer-labels", "--from", "ultra", "--to", "full", "--apply")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].startswith("applied: 2 labelled ultra feature(s), 1 proposal(s) for full (1 set)")
    assert lines[0].endswith("1 skipped; 1 label(s) written")
    assert lines[1].startswith(f"  ultra {child} 'Swim Speed stacker' -> full {p['target_feature']}: set (")
    assert lines[2].startswith(f"  skipped ultra {novel} 'no twin': no full counterpart: verdict novel")
    state = _json(run, "state", "show", str(p["target_feature"]), "--model", "full")["state"]
    assert state["label"] == "Swim Speed stacker" and state["label_provenance"] == p["provenance"]
    code, out, _ = run("state", "show", str(p["target_feature"]), "--model", "full")
    assert f"  label {p['provenance']}" in out.splitlines()


def test_transfer_labels_refuses_bad_models_and_other_example_sets(
    run: Run, db: Path, demo_contexts: Path, tmp_path: Path
) -> None:
    err = _error(run, EXIT_BAD_INPUT, "state", "transfer-labels", "--from", "medium", "--to", "full")
    assert "invalid choice: 'medium'" in err["message"]
    err = _error(run, EXIT_BAD_INPUT, "state", "transfer-labels", "--from", "ultra", "--to", "ultra")
    assert err["message"].startswith("--from and --to are both 'ultra'")
    err = _error(
        run, EXIT_BAD_INPUT, "state", "transfer-labels", "--from", "ultra", "--to", "full",
        "--from-context", "full",
    )
    assert "context 'full'" in err["message"] and "not 'ultra' (--from ultra)" in err["message"]
    err = _error(
        run, EXIT_MISSING, "state", "transfer-labels", "--from", "ultra", "--to", "full",
        "--to-context", "nowhere",
    )
    assert "no context named 'nowhere'" in err["message"]
    _json(run, "state", "label", "3", "--model", "ultra", "x")
    before = _json(run, "state", "export", "--format", "json")["content"]["features"]
    other = other_example_set(demo_contexts / "full", tmp_path / "full-b", "full-b")
    err = _error(
        run, EXIT_BAD_INPUT, "state", "transfer-labels", "--from", "ultra", "--to", "full",
        "--to-context", str(other), "--apply",
    )
    assert "contexts 'ultra'" in err["message"] and "'full-b'" in err["message"]
    assert "different example sets" in err["message"] and str(other) in err["message"]
    assert _json(run, "state", "export", "--format", "json")["content"]["features"] == before
