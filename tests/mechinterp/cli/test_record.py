"""``decompose --record`` and ``match --record`` (splatnlp/mechinterp/cli/match.py): what they
store (one finding per decomposition with a link per member; "no counterpart" findings, never a
link), the history and timestamps of every feature they touch, and stores they cannot write to
(a clear error naming the file, and the database unchanged)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import splatnlp.mechinterp.state.db as db_module
from splatnlp.mechinterp.cli.app import main
from splatnlp.mechinterp.cli.common import EXIT_BAD_INPUT, EXIT_OK
from splatnlp.mechinterp.state import ResearchStore


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)  # exactly one JSON document


@pytest.fixture
def store_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "record.sqlite"
    monkeypatch.setenv("SPLATNLP_STORE", str(path))
    return path


@pytest.fixture
def truth(demo_contexts: Path):
    from splatnlp.mechinterp.demo.build import load_ground_truth

    return load_ground_truth(demo_contexts)


def _matcher(source: str):
    from splatnlp.mechinterp.analysis import FeatureMatcher
    from splatnlp.mechinterp.context import load_context

    return FeatureMatcher(load_context(source))


def _dump(path: Path) -> list[str]:
    """The database's whole content as SQL text: what 'unchanged' is checked against."""
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def _split_parent(truth, matcher) -> int:
    """A planted split Full feature whose decomposition has at least three members."""
    for f in (i for i, c in enumerate(truth.full_class) if c == "split"):
        if matcher.find_decomposition(f).n_members >= 3:
            return f
    raise AssertionError("the tiny demo has no split Full feature with three members")


# -- decompose --record ----------------------------------------------------------------------
def test_decompose_record_stores_one_finding_and_a_link_per_member(
    demo_contexts: Path, truth, store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matcher = _matcher("full")
    parent = _split_parent(truth, matcher)
    expected = matcher.find_decomposition(parent)
    pair = matcher.score_all(parent)

    code, doc = run_json(
        capsys,
        "decompose",
        str(parent),
        "--source",
        "full",
        "--limit",
        "1",
        "--record",
        "--recorded-by",
        "t",
    )
    assert code == EXIT_OK
    assert (
        len(doc["members"]) == 1 and doc["n_members"] == expected.n_members
    )  # --limit cuts the listing only
    recorded = doc["recorded"]
    assert recorded["kind"] == "decomposition" and len(recorded["link_ids"]) == expected.n_members

    with ResearchStore(store_file) as store:
        (finding,) = store.findings("full", parent)
        assert finding.id == recorded["id"] and finding.recorded_by == "t"
        assert finding.decomposition == expected  # every member, its weight and evidence
        assert finding.summary.startswith(
            f"full {parent} split into {expected.n_members} ultra features"
        )
        links = store.links("full", parent)
        assert [k.id for k in links] == finding.link_ids
        for member, link in zip(expected.members, links, strict=True):
            assert (link.source_model, link.source_feature) == ("full", parent)
            assert (link.target_model, link.target_feature) == ("ultra", member.feature)
            assert link.finding_id == finding.id
            assert link.relation == pair["relation"][member.feature]  # the matcher's own label
            assert link.relation in (
                "source_split_by_target",
                "equivalent",
            )  # children of the parent
            assert link.scores["weight"] == member.weight
            assert link.scores["activation_correlation"] == pytest.approx(
                pair["activation_correlation"][member.feature]
            )
        # History and timestamps: the parent says it once, each member gets its link.
        state = store.feature_state(parent, "full")
        assert [h.action for h in state.history] == ["finding_recorded"]
        assert f"finding #{finding.id} (decomposition)" in state.history[0].detail
        assert state.created_at is not None and state.updated_at is not None
        for member, link in zip(expected.members, links, strict=True):
            m = store.feature_state(member.feature, "ultra")
            assert [h.action for h in m.history] == ["link_recorded"]
            assert (
                f"link #{link.id}: full {parent} -> ultra {member.feature}" in m.history[0].detail
            )
            assert f"with finding #{finding.id}" in m.history[0].detail
            assert m.created_at == m.updated_at == link.recorded_at


def test_batch_decompose_records_each_good_id(
    demo_contexts: Path, truth, store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matcher = _matcher("full")
    a = _split_parent(truth, matcher)
    unique = truth.full_class.index("full_only")
    code, doc = run_json(
        capsys, "decompose", str(a), "99999", str(unique), "--source", "full", "--record"
    )
    assert code == EXIT_BAD_INPUT and doc["n_errors"] == 1  # the bad id is reported in its place
    good, bad, none = doc["reports"]
    assert "99999" in bad["error"] and "recorded" not in bad
    with ResearchStore(store_file) as store:
        findings = store.findings(kind="decomposition")
        assert [(f.model_type, f.feature_id) for f in findings] == [("full", a), ("full", unique)]
        assert [f.id for f in findings] == [good["recorded"]["id"], none["recorded"]["id"]]
        n_unique = matcher.find_decomposition(unique).n_members
        assert len(findings[1].link_ids) == n_unique == none["n_members"]
        assert store.count_links() == matcher.find_decomposition(a).n_members + n_unique


# -- match --record --------------------------------------------------------------------------
def test_match_record_without_counterpart_records_a_finding_not_a_link(
    demo_contexts: Path, truth, store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    novel = truth.ultra_class.index("novel")
    unique = truth.full_class.index("full_only")
    for source, feature, label in (("ultra", novel, "novel"), ("full", unique, "unique")):
        code, doc = run_json(
            capsys,
            "match",
            str(feature),
            "--source",
            source,
            "--record",
            "--top",
            "3",
            "--no-decomposition",
        )
        assert code == EXIT_OK and doc["verdict"]["label"] == label and doc["is_unique"]
        assert any(
            w.startswith(f"no link recorded: the verdict is {label}; recorded finding #")
            for w in doc["warnings"]
        )
        corr = _matcher(source).score_all(feature)["activation_correlation"]
        with ResearchStore(store_file) as store:
            assert store.links(source, feature) == []
            (finding,) = store.findings(source, feature)
            ev = finding.no_counterpart
            assert finding.kind == "no_counterpart" and finding.link_ids == []
            assert ev.verdict_label == label and ev.rule == doc["verdict"]["rule"]
            assert ev.best_candidate == int(np.nanargmax(corr))  # brute force over every target
            assert ev.best_candidate_correlation == pytest.approx(np.nanmax(corr))
            assert ev.best_candidate_score == doc["matches"][0]["combined_score"]
            assert ev.best_correlation == pytest.approx(np.nanmax(corr))
            state = store.feature_state(feature, source)
            assert [h.action for h in state.history] == ["finding_recorded"]
            assert "no link" in state.history[0].detail and state.created_at is not None
            # The best candidate was not touched: no link, no history.
            assert store.feature_state(ev.best_candidate, finding.target_model).created_at is None


def test_match_record_of_a_pair_touches_both_features(
    demo_contexts: Path, truth, store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = truth.ultra_class.index("child")
    code, doc = run_json(
        capsys,
        "match",
        str(child),
        "--source",
        "ultra",
        "--top",
        "3",
        "--record",
        "--no-decomposition",
    )
    assert code == EXIT_OK
    parent = doc["verdict"]["parent"]
    with ResearchStore(store_file) as store:
        (link,) = store.links("ultra", child)
        assert store.findings() == []
        for model, feature in (("ultra", child), ("full", parent)):
            state = store.feature_state(feature, model)
            assert [h.action for h in state.history] == ["link_recorded"]
            assert state.history[0].detail.startswith(
                f"link #{link.id}: ultra {child} -> full {parent}"
            )
            assert state.created_at == state.updated_at == link.recorded_at


# -- stores that cannot be written ---------------------------------------------------------
class _ReadOnlySqlite:
    """``sqlite3`` as the store module sees it, opening every database read-only: what SQLite
    does with a file this process may not write (as root, file modes do not stop writes)."""

    def __getattr__(self, name: str):
        return getattr(sqlite3, name)

    @staticmethod
    def connect(path, **kwargs):
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, **kwargs)


@pytest.fixture
def filled_store(store_file: Path) -> Path:
    with ResearchStore(store_file) as store:
        store.manager(7, "full").set_label("already here")
    return store_file


RECORDING_COMMANDS = [
    ["decompose", "{split}", "--source", "full", "--record"],
    ["match", "{novel}", "--source", "ultra", "--record", "--no-decomposition"],
    ["match", "{child}", "--source", "ultra", "--record", "--no-decomposition"],
]


def _argv(template: list[str], truth) -> list[str]:
    ids = {
        "split": str(truth.full_class.index("split")),
        "novel": str(truth.ultra_class.index("novel")),
        "child": str(truth.ultra_class.index("child")),
    }
    return [a.format(**ids) for a in template]


@pytest.mark.parametrize(
    "template", RECORDING_COMMANDS, ids=["decompose-split", "match-novel", "match-child"]
)
def test_record_into_a_read_only_store_is_refused_and_changes_nothing(
    demo_contexts: Path,
    truth,
    filled_store: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    template: list[str],
) -> None:
    before = _dump(filled_store)
    with monkeypatch.context() as m:
        m.setattr(db_module, "sqlite3", _ReadOnlySqlite())
        code, doc = run_json(capsys, *_argv(template, truth))
    assert code == EXIT_BAD_INPUT
    message = doc["error"]["message"]
    assert message.startswith("--record needs a writable research store")
    assert (
        str(filled_store) in message
        and "not writable" in message
        and "nothing was written" in message
    )
    assert "--store" in doc["error"]["hint"] and "SPLATNLP_STORE" in doc["error"]["hint"]
    assert _dump(filled_store) == before


@pytest.fixture
def read_only_file(filled_store: Path) -> Iterator[Path]:
    """``filled_store`` made read-only for real: mode 0444 for a normal user, else (root)
    the immutable attribute; skipped where neither is possible."""
    os.chmod(filled_store, 0o444)
    undo: Callable[[], None] = lambda: os.chmod(filled_store, 0o644)  # noqa: E731
    if os.access(filled_store, os.W_OK):  # root: modes do not apply
        chattr = shutil.which("chattr")
        if (
            chattr is None
            or subprocess.run([chattr, "+i", str(filled_store)], capture_output=True).returncode
        ):
            undo()
            pytest.skip("cannot make a file read-only here (root without chattr +i)")
        undo = lambda: subprocess.run([chattr, "-i", str(filled_store)], check=True)  # noqa: E731
    try:
        yield filled_store
    finally:
        undo()


def test_record_into_a_read_only_file_is_refused_and_changes_nothing(
    demo_contexts: Path, truth, read_only_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _dump(read_only_file)
    code, doc = run_json(capsys, *_argv(RECORDING_COMMANDS[0], truth))
    assert code == EXIT_BAD_INPUT
    assert (
        str(read_only_file) in doc["error"]["message"] and "not writable" in doc["error"]["message"]
    )
    assert _dump(read_only_file) == before


def test_record_into_paths_that_are_no_store(
    demo_contexts: Path, truth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    before = _dump(other)
    argv = _argv(RECORDING_COMMANDS[0], truth)
    for store, expected in (
        (blocker / "store.sqlite", "cannot open the research store"),
        (other, "not a research store"),
    ):
        code, doc = run_json(capsys, *argv, "--store", str(store))
        assert code == EXIT_BAD_INPUT, doc
        assert doc["error"]["message"].startswith("--record needs a writable research store")
        assert str(store) in doc["error"]["message"] and expected in doc["error"]["message"]
    assert not (blocker / "store.sqlite").exists() and blocker.read_text() == "not a folder\n"
    assert _dump(other) == before


def test_a_write_failing_half_way_leaves_nothing(
    demo_contexts: Path, truth, filled_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The finding and its links are one transaction: a failure at the second link takes the
    finding and the first link back with it."""
    matcher = _matcher("full")
    parent = _split_parent(truth, matcher)
    with sqlite3.connect(filled_store) as conn:
        conn.execute(
            "CREATE TRIGGER second_link_fails BEFORE INSERT ON links "
            "WHEN (SELECT COUNT(*) FROM links) >= 1 BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
        )
    before = _dump(filled_store)
    code, doc = run_json(capsys, "decompose", str(parent), "--source", "full", "--record")
    assert code != EXIT_OK and "disk full (test)" in doc["error"]["message"]
    assert _dump(filled_store) == before
    with ResearchStore(filled_store) as store:
        assert store.findings() == [] and store.count_links() == 0
        assert store.feature_state(parent, "full").history == []
