"""``splatnlp-mechinterp match | compare | decompose``: one feature against the other model.

A thin shell over :class:`splatnlp.mechinterp.analysis.FeatureMatcher`; the matcher (and torch
behind it) is imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from splatnlp.mechinterp.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    JSON_SCHEMA_VERSION,
    CLIError,
    add_common,
    emit,
    examples_epilog,
)


# -- handlers --------------------------------------------------------------------------------
def _matcher(args: argparse.Namespace):
    from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
    from splatnlp.mechinterp.context import load_context

    source = load_context(args.source, contexts_dir=args.contexts_dir)
    target = load_context(args.target, contexts_dir=args.contexts_dir) if args.target else None
    options = MatchOptions(
        n_permutations=getattr(args, "permutations", 0) or 0,
        top_token_method=args.top_tokens,
        information_test=getattr(args, "information_test", False),
        verdict=not getattr(args, "no_verdict", False),
    )
    return FeatureMatcher(source, target, options=options, alignment=getattr(args, "alignment", None))


def _read_lines(lines, where: str, parse) -> list[tuple[Any, str]]:
    """``(parse(value) or FeatureError, "WHERE line N")`` for every line that is not blank or a
    ``#`` comment; ``value`` is the line's JSON, or its text when it is not JSON. ``parse``
    raises ValueError with what was expected."""
    from splatnlp.mechinterp.analysis.match.reports import FeatureError

    out = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        origin = f"{where} line {number}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        try:
            out.append((parse(value), origin))
        except ValueError as err:
            out.append((FeatureError(feature=text, error_type="ValueError", error=f"{origin}: {text!r} {err}"), origin))
    return out


def _read_file(option: str, name: str, parse, hint: str) -> list[tuple[Any, str]]:
    """:func:`_read_lines` of the file an option names; a missing file is refused."""
    path = Path(name)
    if not path.is_file():
        raise CLIError(f"{option} {str(path)!r} does not exist", hint=hint)
    with path.open() as fh:
        return _read_lines(fh, str(path), parse)


def _feature_id(value: Any) -> int:
    if isinstance(value, dict):
        value = value.get("feature")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("is not a feature id (expected an integer, or a JSON object with an integer 'feature')")


def _with_origin(item: Any, origin: str | None) -> Any:
    """A query's error, prefixed with the file line it came from (when it came from one)."""
    if origin and _is_error(item) and not item.error.startswith(origin):
        return item.model_copy(update={"error": f"{origin}: {item.error}"})
    return item


def _queries(args: argparse.Namespace) -> tuple[list[tuple[Any, str | None]], bool]:
    """The feature ids to answer, each with the file line it came from (None for the command
    line), and whether this is a batch: several ids, ``-`` (JSON lines or plain ids on stdin) or
    ``--features-file``. A line that is no id becomes a :class:`FeatureError` naming the line,
    reported in its place; so does an id that fails later (out of range)."""
    queries: list[tuple[Any, str | None]] = []
    batch = bool(getattr(args, "features_file", None)) or len(args.feature) != 1 or getattr(args, "jsonl", False)
    for token in args.feature:
        if token == "-":
            batch = True
            queries += _read_lines(sys.stdin, "stdin", _feature_id)
        else:
            try:
                queries.append((int(token), None))
            except ValueError:
                queries.append((token, None))
    if getattr(args, "features_file", None):
        queries += _read_file("--features-file", args.features_file, _feature_id, "one feature id per line, or JSON lines with a 'feature' key")
    if not queries:
        raise CLIError("no feature ids given", hint="pass ids (match 5127 9912), '-' for stdin, or --features-file FILE")
    return queries, batch


def _is_error(item: Any) -> bool:
    from splatnlp.mechinterp.analysis.match.reports import FeatureError

    return isinstance(item, FeatureError)


def _emit_batch(args: argparse.Namespace, items: list, summary) -> int:
    """Print a batch: with --jsonl one JSON line per query (as they are answered, by the caller),
    with --json one document ``{"reports": [...], "n_queries", "n_errors"}``, else the summaries.
    Exit 2 when any query failed (each failure is reported in its place)."""
    from splatnlp.mechinterp.analysis.match.reports import FeatureError

    n_errors = sum(isinstance(item, FeatureError) for item in items)
    if getattr(args, "jsonl", False):  # each line was printed as it was answered (_stream)
        return EXIT_BAD_INPUT if n_errors else EXIT_OK
    if args.json:
        print(json.dumps({
            "schema_version": JSON_SCHEMA_VERSION,
            "reports": [item.model_dump(mode="json") for item in items],
            "n_queries": len(items),
            "n_errors": n_errors,
        }, indent=2))
    else:
        print("\n\n".join(
            f"feature {item.feature!r}: error: {item.error}" if isinstance(item, FeatureError) else summary(item)
            for item in items
        ))
    return EXIT_BAD_INPUT if n_errors else EXIT_OK


def _stream(args: argparse.Namespace, item) -> None:
    if getattr(args, "jsonl", False):
        print(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **item.model_dump(mode="json")}), flush=True)


def _cmd_match(args: argparse.Namespace) -> int:
    ids, batch = _queries(args)
    if args.record and args.no_verdict:
        raise CLIError("--record records the verdict, and --no-verdict skipped it", hint="drop --no-verdict")
    with _record_store(args) as store:
        return _answer_match(args, ids, batch, store)


def _answer_match(args: argparse.Namespace, ids: list[Any], batch: bool, store) -> int:
    matcher = _matcher(args)
    if batch:
        if args.output:
            raise CLIError("--output takes one feature", hint="run one `match FEATURE --output FILE` per feature")
        items = []
        for feature, origin in ids:
            (item,) = [feature] if _is_error(feature) else matcher.find_matches_many(
                [feature], n_candidates=args.candidates, n_top_matches=args.top, sort_by=args.sort_by,
                decompose=not args.no_decomposition,
            )
            item = _with_origin(item, origin)
            if store is not None and hasattr(item, "verdict"):
                _record_verdict(args, store, item)
            _stream(args, item)
            items.append(item)
        return _emit_batch(args, items, lambda r: r.summary())
    # With --output the full table (every scored candidate) goes to the file and stdout keeps the
    # --top first of the same report: one scoring pass, not two. --top is still validated.
    n_top = matcher.target_ctx.n_features if args.output and args.top >= 1 else args.top
    report = matcher.find_matches(
        ids[0][0],
        n_candidates=args.candidates,
        n_top_matches=n_top,
        sort_by=args.sort_by,
        decompose=not args.no_decomposition,
    )
    if args.output:
        Path(args.output).write_text(report.model_dump_json(indent=1))
        report = report.model_copy(update={"matches": report.matches[: args.top]})
        report.warnings.append(f"all {report.n_candidates_tested} scored candidates written to {args.output}")
    if store is not None:
        _record_verdict(args, store, report)
    emit(args, report, report.summary())
    return EXIT_OK


_STORE_HINT = (
    "pass --store FILE or set $SPLATNLP_STORE to a writable file; "
    "`splatnlp-mechinterp state show FEATURE --model MODEL --store FILE` reads it back"
)


def _record_store(args: argparse.Namespace):
    """The research store ``--record`` writes to, opened and checked writable before any
    scoring (a bad store then costs nothing, and nothing is half-written); a null context
    without ``--record``."""
    import contextlib

    if not args.record:
        return contextlib.nullcontext(None)
    from splatnlp.mechinterp.state import ResearchStore

    try:
        store = ResearchStore(args.store)
    except ValueError as exc:
        raise CLIError(f"--record needs a writable research store: {exc}", hint=_STORE_HINT) from exc
    try:
        store.check_writable()
    except (ValueError, TimeoutError) as exc:
        store.close()
        raise CLIError(f"--record needs a writable research store: {exc}", hint=_STORE_HINT) from exc
    return store


def _record_verdict(args: argparse.Namespace, store, report) -> None:
    """Store the verdict's pairs as links: a larger-side feature's parent, or a smaller-side
    feature's children among the listed matches (one transaction). A novel, unique or dead
    feature gets a "no counterpart" finding with the evidence instead, never a link."""
    verdict = report.verdict
    if verdict is None:
        raise CLIError("--record records the verdict, and --no-verdict skipped it", hint="drop --no-verdict")
    pairs = [verdict.parent] if verdict.parent is not None else list(verdict.children)
    if not pairs:
        finding = store.record_no_counterpart(report, recorded_by=args.recorded_by)
        report.warnings.append(
            f"no link recorded: the verdict is {verdict.label}; recorded finding #{finding.id} "
            f"(no_counterpart) on {report.source_model} {report.source_feature}: {finding.summary}"
        )
        return
    listed = {m.target_feature: i for i, m in enumerate(report.matches)}
    indices = [listed[t] for t in pairs if t in listed]
    missing = [t for t in pairs if t not in listed]
    if not indices:
        raise CLIError(
            f"nothing recorded: the verdict's {report.target_model} feature(s) {missing[:8]} are not "
            "among the listed matches; use the default --sort-by or a larger --top"
        )
    with store.transaction():
        links = [store.record_link_from_report(report, i, recorded_by=args.recorded_by) for i in indices]
    shown = ", ".join(f"{link.target_feature} ({link.relation})" for link in links)
    report.warnings.append(
        f"recorded {len(links)} link(s) {report.source_model} {report.source_feature} -> "
        f"{report.target_model} {shown}"
    )
    if missing:
        report.warnings.append(
            f"{len(missing)} more {verdict.label} pair(s) not listed and not recorded "
            f"({report.target_model} {missing[:8]}); raise --top to record them"
        )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, dict):
        value = [value.get("source"), value.get("target")]
    elif isinstance(value, str):
        parts = value.replace(",", " ").split()
        value = [int(x) if x.lstrip("-").isdigit() else x for x in parts]
    if (
        isinstance(value, list) and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):  # fmt: skip
        return value[0], value[1]
    raise ValueError(
        "is not a pair of feature ids (expected 'SOURCE TARGET', [SOURCE, TARGET], or a JSON "
        "object with integer 'source' and 'target')"
    )


def _pairs(args: argparse.Namespace) -> tuple[list[tuple[Any, str | None]], bool]:
    """The (source, target) pairs to compare, each with the file line it came from, and whether
    this is a batch. ``compare S T`` is one pair; ``compare S T1 T2 ...`` is S against each
    target; ``-`` and ``--pairs-file`` add one pair per line."""
    tokens = [t for t in args.ids if t != "-"]
    batch = len(tokens) > 2 or "-" in args.ids or bool(args.pairs_file) or args.jsonl
    pairs: list[tuple[Any, str | None]] = []
    if tokens:
        if len(tokens) < 2:
            raise CLIError(
                f"compare needs a source and at least one target, got {tokens}",
                hint="compare SOURCE TARGET [TARGET ...], or pairs on stdin ('-') or in --pairs-file",
            )
        ids = []
        for token in tokens:
            try:
                ids.append(int(token))
            except ValueError:
                raise CLIError(f"{token!r} is not a feature id (expected an integer)") from None
        pairs += [((ids[0], t), None) for t in ids[1:]]
    if "-" in args.ids:
        pairs += _read_lines(sys.stdin, "stdin", _pair)
    if args.pairs_file:
        pairs += _read_file("--pairs-file", args.pairs_file, _pair, "one 'SOURCE TARGET' pair per line, or JSON lines with 'source' and 'target'")
    if not pairs:
        raise CLIError("no pairs given", hint="compare SOURCE TARGET [TARGET ...], '-' for stdin, or --pairs-file FILE")
    return pairs, batch


def _comparison_text(c) -> str:
    ex = c.overlap_examples
    return (
        f"{c.source_model} {c.source_feature} vs {c.target_model} {c.target_feature}: {c.notes}\n"
        f"  active on both {c.n_both} (e.g. {ex.get('both', [])}), only source {c.n_only_source} "
        f"(e.g. {ex.get('only_source', [])}), only target {c.n_only_target} "
        f"(e.g. {ex.get('only_target', [])}), neither {c.n_neither}\n"
        f"  shared tokens {c.shared_tokens[:8]}\n"
        f"  source only {c.source_only_tokens[:8]}\n"
        f"  target only {c.target_only_tokens[:8]}"
    )


def _cmd_compare(args: argparse.Namespace) -> int:
    import itertools

    pairs, batch = _pairs(args)
    if batch and args.plot:
        raise CLIError("--plot takes one pair", hint="run one `compare SOURCE TARGET --plot FILE` per pair")
    plot_path = None
    if args.plot:  # refused before any scoring: a bad suffix or folder
        from splatnlp.mechinterp.cli.plot import check_out

        plot_path = check_out(args.plot, option="--plot")
    matcher = _matcher(args)
    if batch:
        items = []
        # Runs of pairs with one source share its scoring pass (compare_features_many).
        for _, run in itertools.groupby(pairs, key=lambda q: None if _is_error(q[0]) else q[0][0]):
            run = list(run)
            todo = [q for q, _ in run if not _is_error(q)]
            answers = iter(matcher.compare_features_many(todo))
            for query, origin in run:
                item = _with_origin(query if _is_error(query) else next(answers), origin)
                _stream(args, item)
                items.append(item)
        return _emit_batch(args, items, _comparison_text)
    ((source, target), _), = pairs
    comparison = matcher.compare_features(source, target)
    text = _comparison_text(comparison)
    payload: Any = comparison
    if plot_path is not None:
        from splatnlp.mechinterp.cli.plot import save_pair_plot

        drawn = save_pair_plot(matcher, comparison.source_feature, comparison.target_feature, plot_path)
        payload = {**comparison.model_dump(mode="json"), "plot": drawn["out"]}
        text += f"\n  activation scatter written to {drawn['out']}"
    emit(args, payload, text)
    return EXIT_OK


@functools.cache
def _recorded_decomposition():
    """The JSON of ``decompose --record``: the decomposition and what was stored for it."""
    from splatnlp.mechinterp.analysis.match.reports import Decomposition

    class RecordedDecomposition(Decomposition):
        recorded: dict[str, Any] | None = None
        """The stored finding (``id``, ``summary``, ``link_ids``: one parent -> member link per
        member, ``recorded_by``, ``recorded_at``), as ``state show`` returns it, without the
        decomposition repeated."""

    return RecordedDecomposition


def _record_decomposition(args: argparse.Namespace, store, matcher, d):
    """Store the whole decomposition ``d`` as one finding with a link per member (relations
    and scores from one scoring pass of the source); returns ``d`` with ``recorded``."""
    finding = store.record_decomposition(d, matcher.score_all(d.source_feature), recorded_by=args.recorded_by)
    recorded = finding.model_dump(mode="json", exclude={"decomposition"})
    return _recorded_decomposition().model_validate({**d.model_dump(), "recorded": recorded})


def _decomposition_text(d) -> str:
    r2 = "n/a" if d.r_squared is None else f"{d.r_squared:.3f}"
    lines = [
        f"{d.source_model} feature {d.source_feature}: "
        + (f"split into {d.n_members} {d.target_model} features" if d.is_split else f"{d.n_members} member(s), not split")
        + f" (R^2 {r2})"
    ]
    lines += [
        f"  {d.target_model} {m.feature}: weight {m.weight:.3f}, r={m.activation_correlation:.3f}, "
        f"shared {m.shared_top_tokens[:3]}"
        for m in d.members
    ]
    recorded = getattr(d, "recorded", None)
    if recorded:
        links = ", ".join(f"#{i}" for i in recorded["link_ids"]) or "none"
        lines.append(f"  recorded finding #{recorded['id']} with links {links}")
    return "\n".join(lines)


def _cmd_decompose(args: argparse.Namespace) -> int:
    ids, batch = _queries(args)
    with _record_store(args) as store:
        matcher = _matcher(args)
        items = []
        for feature, origin in ids:
            (item,) = [feature] if _is_error(feature) else matcher.find_decomposition_many([feature])
            item = _with_origin(item, origin)
            if store is not None and hasattr(item, "members"):  # every member, before --limit
                item = _record_decomposition(args, store, matcher, item)
            if hasattr(item, "members"):  # --limit lists fewer members; n_members keeps the count
                item = item.model_copy(update={"members": item.members[: args.limit]})
            _stream(args, item)
            items.append(item)
    if batch:
        return _emit_batch(args, items, _decomposition_text)
    (item,) = items
    if not hasattr(item, "members"):
        raise CLIError(item.error)
    emit(args, item, _decomposition_text(item))
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------
def _batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features-file", default=None, metavar="FILE", help="also read feature ids from FILE (one per line, or JSON lines)")
    p.add_argument(
        "--jsonl", action="store_true",
        help="several features: stream one JSON line per feature as it is answered (errors in place)",
    )


def _matching_options(p: argparse.ArgumentParser, *, default_source: str) -> None:
    p.add_argument("--source", default=default_source, help=f"source context name or path (default {default_source})")
    p.add_argument("--target", default=None, help="target context (default: the other of ultra/full)")
    p.add_argument(
        "--top-tokens", default="enrichment", choices=["enrichment", "frequency"],
        help="top-token definition for token overlap (default enrichment)",
    )


def add_match_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``match``, ``compare`` and ``decompose`` commands."""
    from splatnlp.mechinterp.analysis.match.reports import (
        PAIR_METRICS,  # light: pydantic models only
    )

    fmt = argparse.RawDescriptionHelpFormatter
    match = subparsers.add_parser(
        "match",
        help="score every feature of the other model against one feature",
        description="Find a feature's counterparts in the other model: every candidate scored exactly.",
        epilog=examples_epilog(
            "splatnlp-mechinterp match 18712 --source ultra --top 5 --json",
            "splatnlp-mechinterp match 512 --source full --top 3",
            "splatnlp-mechinterp match 5127 9912 361 --top 3 --json       # one document, a report per id",
            "cut -f1 ids.txt | splatnlp-mechinterp match - --jsonl         # one JSON line per id",
        ),
        formatter_class=fmt,
    )
    match.add_argument("feature", nargs="*", help="source feature id(s); '-' reads ids (or JSON lines with a 'feature' key) from stdin")
    _batch_options(match)
    _matching_options(match, default_source="ultra")
    match.add_argument("--top", type=int, default=10, help="matches to list (default 10)")
    match.add_argument("--candidates", type=int, default=None, help="keep only the best N by an exact prefilter")
    match.add_argument(
        "--sort-by", default="activation_correlation",
        choices=["combined_score", *PAIR_METRICS],
    )
    match.add_argument("--no-decomposition", action="store_true", help="skip the decomposition")
    match.add_argument(
        "--no-verdict", action="store_true",
        help="skip report.verdict (an Ultra source's verdict needs its parent's other children: "
        "about 0.6 s a query at real scale); is_unique is the same either way",
    )
    match.add_argument(
        "--information-test", action="store_true",
        help="also run the stitching test of an Ultra source (verdict.information_test; loads both "
        "SAEs, needs the Full context's activations)",
    )
    match.add_argument("--permutations", type=int, default=0, help="empirical null with N shuffles (default: analytic)")
    match.add_argument("--output", default=None, help="also write every scored candidate to this JSON file")
    match.add_argument("--record", action="store_true", help="record the verdict in the research store: links to the parent of a larger-side feature, or to the listed children of a smaller-side one; a 'no counterpart' finding (no link) for a novel, unique or dead feature")
    match.add_argument("--recorded-by", default="splatnlp-mechinterp match", help="who records the link")
    match.add_argument("--store", default=None, metavar="FILE", help="the research store --record writes to (default: $SPLATNLP_STORE, config store_path, <data dir>)")
    match.add_argument(
        "--alignment", default=None, metavar="DIR",
        help="tables written by `align`: the report then says what they hold about the feature "
        "(class, parent, children)",
    )
    add_common(match)
    match.set_defaults(func=_cmd_match)

    compare = subparsers.add_parser(
        "compare",
        help="every pair metric for a source and a target feature (or several pairs)",
        epilog=examples_epilog(
            "splatnlp-mechinterp compare 18712 1024 --source ultra --json",
            "splatnlp-mechinterp compare 5127 1126 --source ultra --plot pair.png",
            "splatnlp-mechinterp compare 5127 1126 675 --json        # 5127 against each target, one document",
            "printf '5127 1126\\n9912 675\\n' | splatnlp-mechinterp compare - --jsonl  # pairs on stdin",
        ),
        formatter_class=fmt,
    )
    compare.add_argument(
        "ids", nargs="*", metavar="ID",
        help="SOURCE TARGET [TARGET ...]: the source against each target; '-' reads pairs from "
        "stdin ('SOURCE TARGET' per line, or JSON lines with 'source' and 'target')",
    )
    compare.add_argument("--pairs-file", default=None, metavar="FILE", help="also read pairs from FILE (same format as stdin)")
    compare.add_argument(
        "--jsonl", action="store_true",
        help="several pairs: stream one JSON line per pair as it is answered (errors in place)",
    )
    _matching_options(compare, default_source="ultra")
    compare.add_argument(
        "--plot", default=None, metavar="FILE",
        help="also save the pair's activation scatter (every example, coloured by overlap): "
        ".png or .svg",
    )
    add_common(compare)
    compare.set_defaults(func=_cmd_compare)

    decompose = subparsers.add_parser(
        "decompose",
        help="the target features that together account for a source feature (is it split?)",
        epilog=examples_epilog(
            "splatnlp-mechinterp decompose 512 --source full --limit 10 --json",
            "splatnlp-mechinterp decompose 361 --source full --record --recorded-by me --json  # one finding + a link per member",
        ),
        formatter_class=fmt,
    )
    decompose.add_argument("feature", nargs="*", help="source feature id(s); '-' reads ids (or JSON lines with a 'feature' key) from stdin")
    _batch_options(decompose)
    _matching_options(decompose, default_source="full")
    decompose.add_argument("--limit", type=int, default=20, help="members to list (default 20); n_members gives the total")
    decompose.add_argument("--record", action="store_true", help="record each decomposition (every member, whatever --limit) in the research store: one finding on the source with the members' weights and evidence, and a source -> member link per member")
    decompose.add_argument("--recorded-by", default="splatnlp-mechinterp decompose", help="who records the finding")
    decompose.add_argument("--store", default=None, metavar="FILE", help="the research store --record writes to (default: $SPLATNLP_STORE, config store_path, <data dir>)")
    add_common(decompose)
    decompose.set_defaults(func=_cmd_decompose)
