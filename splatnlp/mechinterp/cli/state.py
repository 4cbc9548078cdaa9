"""``splatnlp-mechinterp state ...``: the research-state store from the command line.

A thin shell over :mod:`splatnlp.mechinterp.state`. ``cli.app.build_parser`` calls
:func:`add_state_commands`; every handler prints one JSON document with ``--json`` (with
``schema_version``) or a few readable lines, and raises on errors, which ``cli.app.main`` turns
into exit codes (2 bad input, 3 missing hypothesis/evidence/file).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splatnlp.mechinterp.cli.common import (
    EXIT_MISSING,
    EXIT_OK,
    CLIError,
    add_common,
    emit,
    examples_epilog,
)

if TYPE_CHECKING:
    from splatnlp.mechinterp.state import CrossModelLink, FeatureState, ResearchStore

PROG = "splatnlp-mechinterp state"
MODELS = ("full", "ultra")
STATUSES = ("proposed", "testing", "supported", "refuted", "superseded")
STRENGTHS = ("strong", "moderate", "weak")


def _missing(exc: BaseException, hint: str) -> Exception:
    message = exc.args[0] if exc.args else str(exc)
    return CLIError(str(message), code=EXIT_MISSING, hint=hint)


def _open(args: argparse.Namespace) -> ResearchStore:
    from splatnlp.mechinterp.state import ResearchStore

    return ResearchStore(args.store)


def _ids_hint(args: argparse.Namespace) -> str:
    return (
        f"`{PROG} show {args.feature} --model {args.model}` lists the feature's hypothesis and "
        "evidence ids"
    )


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _strip_reports(links: list[CrossModelLink], keep: bool) -> list[CrossModelLink]:
    # Stored MatchReports run to kilobytes each; they come back only when asked for.
    return links if keep else [k.model_copy(update={"report": None}) for k in links]


def _link_line(k: CrossModelLink) -> str:
    r = k.scores.get("activation_correlation")
    corr = "n/a" if r is None else f"{r:.3f}"
    return (
        f"link #{k.id}: {k.source_model} {k.source_feature} -> {k.target_model} "
        f"{k.target_feature}  {k.relation}, r={corr}  ({k.recorded_by}, {k.recorded_at:%Y-%m-%d})"
    )


def _state_text(s: FeatureState) -> str:
    lines = [
        f"{s.model_type} feature {s.feature_id}: {s.label or 'unlabeled'}  "
        f"({len(s.hypotheses)} hypotheses, {len(s.evidence)} evidence, {len(s.links)} links"
        + (f", {len(s.findings)} findings)" if s.findings else ")")
    ]
    if s.label_provenance:
        lines.append(f"  label {s.label_provenance}")
    lines += [f"  {h.id} {h.status:<10} {h.confidence:.2f}  {h.statement}" for h in s.hypotheses]
    lines += [f"  {e.id} {e.strength:<10} {e.experiment_id}: {e.summary}" for e in s.evidence]
    lines += [f"  {_link_line(k)}" for k in s.links]
    lines += [f"  finding #{k.id} {k.kind}: {k.summary}" for k in s.findings]
    lines += [f"  pitfall: {p}" for p in s.known_pitfalls]
    if s.created_at is None and not s.links:
        lines.append("  nothing recorded yet")
    return "\n".join(lines)


# -- handlers --------------------------------------------------------------------------------
def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        state = store.feature_state(args.feature, args.model)
        state = state.model_copy(update={"links": _strip_reports(state.links, args.with_reports)})
        emit(args, {"store": str(store.path), "state": _dump(state)}, _state_text(state))
    return EXIT_OK


def _feature_payload(args: argparse.Namespace, store: Any, **record: Any) -> dict[str, Any]:
    """The JSON of a command that changed one feature's state: where, which feature, and what."""
    return {"store": str(store.path), "feature_id": args.feature, "model_type": args.model, **record}


def _cmd_label(args: argparse.Namespace) -> int:
    with _open(args) as store:
        store.manager(args.feature, args.model).set_label(args.text)
        payload = _feature_payload(args, store, label=args.text)
    emit(args, payload, f"{args.model} feature {args.feature} labelled {args.text!r}")
    return EXIT_OK


def _cmd_hypothesis_add(args: argparse.Namespace) -> int:
    with _open(args) as store:
        h = store.manager(args.feature, args.model).add_hypothesis(
            args.statement, confidence=args.confidence, status=args.status, tags=args.tag
        )
        payload = _feature_payload(args, store, hypothesis=_dump(h))
    emit(
        args,
        payload,
        f"added {h.id} to {args.model} feature {args.feature} "
        f"({h.status}, confidence {h.confidence:.2f}): {h.statement}",
    )
    return EXIT_OK


def _cmd_hypothesis_update(args: argparse.Namespace) -> int:
    with _open(args) as store:
        try:
            h = store.manager(args.feature, args.model).update_hypothesis(
                args.hypothesis_id,
                status=args.status,
                confidence=args.confidence,
                add_supporting=args.supporting,
                add_refuting=args.refuting,
                add_tags=args.tag,
            )
        except KeyError as exc:
            raise _missing(exc, _ids_hint(args)) from exc
        payload = _feature_payload(args, store, hypothesis=_dump(h))
    evidence = ", ".join(
        [f"supporting {e}" for e in h.supporting_evidence]
        + [f"refuting {e}" for e in h.refuting_evidence]
    )
    emit(
        args,
        payload,
        f"updated {h.id} of {args.model} feature {args.feature}: {h.status}, "
        f"confidence {h.confidence:.2f}" + (f"; {evidence}" if evidence else ""),
    )
    return EXIT_OK


def _parse_metrics(items: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"--metric {item!r} is not NAME=VALUE (e.g. --metric correlation=0.82)"
            )
        try:
            metrics[name.strip()] = float(value)
        except ValueError:
            raise ValueError(
                f"--metric {item!r}: {value!r} is not a number (e.g. --metric correlation=0.82)"
            ) from None
    return metrics


def _cmd_evidence_add(args: argparse.Namespace) -> int:
    metrics = _parse_metrics(args.metric)
    with _open(args) as store:
        try:
            e = store.manager(args.feature, args.model).add_evidence(
                args.experiment,
                args.summary,
                strength=args.strength,
                result_path=args.result_path,
                key_metrics=metrics,
                supports=args.supports,
                refutes=args.refutes,
            )
        except KeyError as exc:
            raise _missing(exc, _ids_hint(args)) from exc
        payload = _feature_payload(args, store, evidence=_dump(e))
    emit(
        args,
        payload,
        f"added {e.id} ({e.strength}, {e.experiment_id}) to {args.model} feature {args.feature}: "
        f"{e.summary}",
    )
    return EXIT_OK


def _cmd_link_list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        links = store.links(
            args.model, args.feature, limit=args.limit, with_report=args.with_reports
        )
        total = store.count_links(args.model, args.feature)
        payload = {
            "store": str(store.path),
            "n_links": total,
            "links": [_dump(k) for k in links],
        }
    shown = f" (showing {len(links)}; raise --limit for more)" if total > len(links) else ""
    text = "\n".join([f"{total} links{shown}"] + [_link_line(k) for k in links])
    emit(args, payload, text)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    if (args.feature is None) != (args.model is None):
        raise CLIError(
            f"{PROG} export: pass --feature and --model together (got --feature "
            f"{args.feature!r}, --model {args.model!r})",
            hint=f"run `{PROG} export --help`",
        )
    with _open(args) as store:
        if args.format == "json":
            content: Any = (
                store.export_json()
                if args.feature is None
                else _dump(store.feature_state(args.feature, args.model))
            )
            text = json.dumps(content, indent=2)
        elif args.feature is not None:
            content = text = store.export_markdown(args.feature, args.model)
        else:
            pages = [store.export_markdown(f, m) for m, f in store.features()]
            content = text = "\n---\n\n".join(pages) if pages else "No research state recorded.\n"
        path = str(store.path)
    if args.output is not None:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text if text.endswith("\n") else text + "\n")
        n_bytes = out.stat().st_size
        payload = {"store": path, "format": args.format, "output": str(out), "n_bytes": n_bytes}
        emit(args, payload, f"wrote {args.format} export to {out} ({n_bytes} bytes)")
    elif args.json:
        emit(args, {"store": path, "format": args.format, "content": content}, "")
    else:
        print(text.rstrip("\n"))
    return EXIT_OK


def _cmd_import_upstream(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.state import load_upstream_state

    # Every file is read and validated before anything is written.
    states = []
    for name in args.files:
        try:
            states.append((name, load_upstream_state(name)))
        except FileNotFoundError as exc:
            raise _missing(exc, "check the path of the upstream state file") from exc
    seen: dict[tuple[str, int], str] = {}
    for name, s in states:
        key = (s.model_type, s.feature_id)
        if key in seen:
            raise ValueError(
                f"{name!r} and {seen[key]!r} both hold {s.model_type} feature {s.feature_id}; "
                "import one of them"
            )
        seen[key] = name
    imported = []
    with _open(args) as store:
        for name, _ in states:
            s = store.import_upstream_state(name, replace=args.replace)
            imported.append(
                {
                    "file": name,
                    "feature_id": s.feature_id,
                    "model_type": s.model_type,
                    "label": s.label,
                    "n_hypotheses": len(s.hypotheses),
                    "n_evidence": len(s.evidence),
                    "n_history": len(s.history),
                }
            )
        path = str(store.path)
    text = "\n".join(
        f"imported {i['model_type']} feature {i['feature_id']} from {i['file']}: "
        f"{i['n_hypotheses']} hypotheses, {i['n_evidence']} evidence"
        for i in imported
    )
    emit(args, {"store": path, "imported": imported}, text)
    return EXIT_OK


def _transfer_text(t: Any) -> str:
    counts: dict[str, int] = {}
    for p in t.proposals:
        counts[p.action] = counts.get(p.action, 0) + 1
    shown = ", ".join(f"{n} {a}" for a, n in counts.items()) or "none"
    head = (
        f"{'dry run' if t.dry_run else 'applied'}: {t.n_labelled} labelled {t.from_model} "
        f"feature(s), {t.n_proposals} proposal(s) for {t.to_model} ({shown}), "
        f"{len(t.skipped)} skipped"
        + (f"; {t.n_applied} label(s) written" if not t.dry_run else "; pass --apply to write them")
    )
    lines = [head]
    lines += [
        f"  {p.source_model} {p.source_feature} {p.source_label!r} -> {p.target_model} "
        f"{p.target_feature}: {p.action} ({p.provenance}; {p.relation})"
        + (f" - {p.note}" if p.note else "")
        for p in t.proposals
    ]
    lines += [
        f"  skipped {t.from_model} {k.source_feature} {k.source_label!r}: {k.reason}"
        for k in t.skipped
    ]
    return "\n".join(lines)


def _cmd_transfer_labels(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context import load_context
    from splatnlp.mechinterp.state import transfer_labels

    if args.from_model == args.to_model:
        raise CLIError(
            f"--from and --to are both {args.from_model!r}; transfer from 'ultra' to 'full' or "
            "from 'full' to 'ultra'",
            hint=f"run `{PROG} transfer-labels --help`",
        )
    source = load_context(args.from_context or args.from_model, contexts_dir=args.contexts_dir)
    target = load_context(args.to_context or args.to_model, contexts_dir=args.contexts_dir)
    with _open(args) as store:
        result = transfer_labels(
            store,
            source,
            target,
            apply=args.apply,
            overwrite=args.overwrite,
            from_model=args.from_model,
            to_model=args.to_model,
            n_top_matches=args.top,
        )
    emit(args, result, _transfer_text(result))
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------
def add_state_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``state`` command group to a parser's subparsers.

    Every action takes the common options (``--json``, ``-q`` ...). ``--store`` may come before
    the action (``state --store F show ...``) or after it.
    """
    fmt = argparse.RawDescriptionHelpFormatter
    state = subparsers.add_parser(
        "state",
        help="the research-state store: hypotheses, evidence, labels, cross-model links",
        description=(
            "Read and write the research-state store (SQLite). The file is --store, else "
            "$SPLATNLP_STORE, else store_path in the config file, else "
            "<data dir>/research_state.sqlite."
        ),
        epilog=examples_epilog(
            f"{PROG} hypothesis add 18712 --model ultra --statement 'fires on swim speed stacks'",
            f"{PROG} show 18712 --model ultra --json",
        ),
        formatter_class=fmt,
    )
    store_help = "the database file (default: $SPLATNLP_STORE, config store_path, <data dir>)"
    state.add_argument("--store", default=None, help=store_help)
    actions = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")

    def leaf(
        parent: argparse._SubParsersAction,
        name: str,
        helptext: str,
        examples: list[str],
        func: Callable[[argparse.Namespace], int],
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(
            name,
            help=helptext,
            description=helptext,
            epilog=examples_epilog(*examples),
            formatter_class=fmt,
        )
        p.set_defaults(func=func)
        # SUPPRESS: absent here, the group's --store (or its None default) stands.
        p.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
        add_common(p)
        return p

    def feature_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("feature", type=int, help="feature id")
        p.add_argument("--model", required=True, choices=MODELS, help="the feature's model")

    show = leaf(
        actions,
        "show",
        "show one feature's state and its links from both sides",
        [f"{PROG} show 18712 --model ultra --json"],
        _cmd_show,
    )
    feature_args(show)
    show.add_argument("--with-reports", action="store_true", help="include the stored MatchReports")

    label = leaf(
        actions,
        "label",
        "set a feature's label",
        [f"{PROG} label 18712 --model ultra 'Swim Speed Up stacker'"],
        _cmd_label,
    )
    feature_args(label)
    label.add_argument("text", help="the label")

    hyp = actions.add_parser(
        "hypothesis",
        help="add or update hypotheses",
        epilog=examples_epilog(
            f"{PROG} hypothesis add 18712 --model ultra --statement 'fires on SSU stacks'"
        ),
        formatter_class=fmt,
    )
    hyp_actions = hyp.add_subparsers(dest="hypothesis_command", required=True, metavar="ACTION")
    add = leaf(
        hyp_actions,
        "add",
        "add a hypothesis (ids h001, h002 ... are assigned per feature)",
        [
            f"{PROG} hypothesis add 18712 --model ultra --statement 'fires on SSU stacks' "
            "--confidence 0.6 --tag mobility"
        ],
        _cmd_hypothesis_add,
    )
    feature_args(add)
    add.add_argument("--statement", required=True, help="what the feature is claimed to do")
    add.add_argument("--confidence", type=float, default=0.5, help="in [0, 1] (default 0.5)")
    add.add_argument("--status", choices=STATUSES, default="proposed")
    add.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")

    upd = leaf(
        hyp_actions,
        "update",
        "change a hypothesis's status or confidence, or attach evidence",
        [
            f"{PROG} hypothesis update 18712 --model ultra h001 --status supported --confidence 0.85 --supporting e001"
        ],
        _cmd_hypothesis_update,
    )
    feature_args(upd)
    upd.add_argument("hypothesis_id", metavar="HID", help="hypothesis id (h001)")
    upd.add_argument("--status", choices=STATUSES, default=None)
    upd.add_argument("--confidence", type=float, default=None, help="in [0, 1]")
    upd.add_argument(
        "--supporting",
        action="append",
        default=[],
        metavar="EID",
        help="supporting evidence id (repeatable)",
    )
    upd.add_argument(
        "--refuting",
        action="append",
        default=[],
        metavar="EID",
        help="refuting evidence id (repeatable)",
    )
    upd.add_argument("--tag", action="append", default=[], help="a tag to add (repeatable)")

    ev = actions.add_parser(
        "evidence",
        help="add evidence",
        epilog=examples_epilog(
            f"{PROG} evidence add 18712 --model ultra --experiment match-full "
            "--summary 'matches full 512 at r=0.82' --strength strong"
        ),
        formatter_class=fmt,
    )
    ev_actions = ev.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")
    eadd = leaf(
        ev_actions,
        "add",
        "add an evidence item (ids e001, e002 ... are assigned per feature)",
        [
            f"{PROG} evidence add 18712 --model ultra --experiment match-full "
            "--summary 'matches full 512 at r=0.82' --strength strong --metric correlation=0.82"
        ],
        _cmd_evidence_add,
    )
    feature_args(eadd)
    eadd.add_argument("--experiment", required=True, help="what produced it (experiment id)")
    eadd.add_argument("--summary", required=True, help="what was found, in a sentence")
    eadd.add_argument("--strength", required=True, choices=STRENGTHS)
    eadd.add_argument("--result-path", default=None, help="where the full result lives")
    eadd.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a key metric (repeatable)",
    )
    eadd.add_argument(
        "--supports",
        action="append",
        default=[],
        metavar="HID",
        help="hypothesis it supports (repeatable)",
    )
    eadd.add_argument(
        "--refutes",
        action="append",
        default=[],
        metavar="HID",
        help="hypothesis it refutes (repeatable)",
    )

    link = actions.add_parser(
        "link",
        help="list recorded cross-model links",
        epilog=examples_epilog(f"{PROG} link list --model ultra --feature 18712 --json"),
        formatter_class=fmt,
    )
    link_actions = link.add_subparsers(dest="link_command", required=True, metavar="ACTION")
    ls = leaf(
        link_actions,
        "list",
        "list links, oldest first; --model/--feature match either side",
        [f"{PROG} link list --model ultra --feature 18712 --json"],
        _cmd_link_list,
    )
    ls.add_argument("--model", choices=MODELS, default=None, help="a side's model")
    ls.add_argument("--feature", type=int, default=None, help="a side's feature id")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--with-reports", action="store_true", help="include the stored MatchReports")

    exp = leaf(
        actions,
        "export",
        "export the whole store (JSON) or one feature (JSON or Markdown)",
        [
            f"{PROG} export --format json --output research_state.json",
            f"{PROG} export --format markdown --feature 18712 --model ultra",
        ],
        _cmd_export,
    )
    exp.add_argument("--format", choices=("json", "markdown"), default="json")
    exp.add_argument("--feature", type=int, default=None, help="one feature (with --model)")
    exp.add_argument("--model", choices=MODELS, default=None)
    exp.add_argument("--output", default=None, help="write here instead of stdout")

    imp = leaf(
        actions,
        "import-upstream",
        "import upstream SplatNLP per-feature state files (feature_<id>_<model>.json)",
        [f"{PROG} import-upstream state/feature_18712_ultra.json state/feature_512_full.json"],
        _cmd_import_upstream,
    )
    imp.add_argument("files", nargs="+", metavar="FILE", help="upstream state JSON files")

    tl = leaf(
        actions,
        "transfer-labels",
        "propose a label for the counterpart of each labelled feature (dry run unless --apply)",
        [
            f"{PROG} transfer-labels --from ultra --to full --json",
            f"{PROG} transfer-labels --from ultra --to full --apply",
        ],
        _cmd_transfer_labels,
    )
    tl.add_argument("--from", dest="from_model", required=True, choices=MODELS, help="the labelled model")
    tl.add_argument("--to", dest="to_model", required=True, choices=MODELS, help="the model to label")
    tl.add_argument(
        "--from-context", default=None, metavar="NAME", help="its context (default: the model name)"
    )
    tl.add_argument(
        "--to-context", default=None, metavar="NAME", help="its context (default: the model name)"
    )
    tl.add_argument(
        "--apply",
        action="store_true",
        help="write the proposals (each with its provenance); default: dry run",
    )
    tl.add_argument(
        "--overwrite", action="store_true", help="replace labels the targets already have"
    )
    tl.add_argument(
        "--top", type=int, default=20, help="matches listed per query (default 20)"
    )
    imp.add_argument(
        "--replace", action="store_true", help="overwrite features already in the store"
    )
