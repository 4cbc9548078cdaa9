"""``splatnlp-mechinterp``: a thin command-line shell over the Python API.

Every command prints a short readable summary, or with ``--json`` exactly one JSON document on
stdout. Logs and progress go to stderr. Errors with ``--json`` are JSON too::

    {"error": {"type": "KeyError", "message": "...", "hint": "..."}}

Exit codes: 0 ok; 1 unexpected internal error; 2 bad input (bad arguments or values, unknown
names); 3 something needed is missing (a context, a file, the demo); 130 interrupted;
141 the output pipe was closed by its reader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed writer
JSON_SCHEMA_VERSION = 1


class CLIError(Exception):
    """An error with an exit code and a hint for the user (or agent)."""

    def __init__(self, message: str, *, code: int = EXIT_BAD_INPUT, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.hint = hint


def _emit(args: argparse.Namespace, payload: BaseModel | dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        print(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **data}, indent=2))
    else:
        print(text)


def _examples_epilog(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


# -- context ---------------------------------------------------------------------------------
def _cmd_context_list(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context import list_contexts

    entries = list_contexts(contexts_dir=args.contexts_dir)
    lines = [
        f"{e['name']:<12} {e.get('model_type', '?'):<8} {e.get('n_features', '?'):>7} features  "
        f"{e.get('n_examples', '?'):>7} examples  {e['path']}  ({e['source']})"
        + (f"  ERROR: {e['error']}" if "error" in e else "")
        for e in entries
    ]
    if not entries:
        lines = ["no contexts found; build the demo with `splatnlp-mechinterp demo`"]
    _emit(args, {"contexts": entries}, "\n".join(lines))
    return EXIT_OK


def _cmd_context_show(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context import load_context

    ctx = load_context(args.name, contexts_dir=args.contexts_dir)
    summary = ctx.summary()
    _emit(args, summary, summary.to_text())
    return EXIT_OK


def _read_examples_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"examples file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"examples file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError(f"examples file {str(path)!r} must hold a JSON list of build records")
    return data


def _cmd_context_build(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context import build_context

    if (args.activations is None) == (args.codes is None):
        raise CLIError("pass exactly one of --activations and --codes")
    from splatnlp.mechinterp.sae import load_sae

    ctx = build_context(
        args.out_dir,
        sae=load_sae(args.sae, format=args.sae_format),
        examples=_read_examples_file(Path(args.examples)),
        vocab=args.vocab,
        weapon_vocab=args.weapon_vocab,
        activations=args.activations,
        codes=args.codes,
        name=args.name,
        model_type=args.model_type,
        device=args.device,
        chunk_size=args.chunk_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = ctx.summary()
    _emit(args, summary, summary.to_text())
    return EXIT_OK


def _cmd_context_import_upstream(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.importers import import_upstream_dump

    ctx = import_upstream_dump(
        args.dump_dir,
        args.out_dir,
        sae=args.sae,
        vocab=args.vocab,
        weapon_vocab=args.weapon_vocab,
        name=args.name,
        model_type=args.model_type,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = ctx.summary()
    _emit(args, summary, summary.to_text())
    return EXIT_OK


# -- matching --------------------------------------------------------------------------------
def _matcher(args: argparse.Namespace):
    from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
    from splatnlp.mechinterp.context import load_context

    source = load_context(args.source, contexts_dir=args.contexts_dir)
    target = load_context(args.target, contexts_dir=args.contexts_dir) if args.target else None
    options = MatchOptions(
        n_permutations=getattr(args, "permutations", 0) or 0,
        top_token_method=args.top_tokens,
    )
    return FeatureMatcher(source, target, options=options, alignment=getattr(args, "alignment", None))


def _cmd_match(args: argparse.Namespace) -> int:
    matcher = _matcher(args)
    # With --output the full table (every scored candidate) goes to the file and stdout keeps the
    # --top first of the same report: one scoring pass, not two. --top is still validated.
    n_top = matcher.target_ctx.n_features if args.output and args.top >= 1 else args.top
    report = matcher.find_matches(
        args.feature,
        n_candidates=args.candidates,
        n_top_matches=n_top,
        sort_by=args.sort_by,
        decompose=not args.no_decomposition,
    )
    if args.output:
        Path(args.output).write_text(report.model_dump_json(indent=1))
        report = report.model_copy(update={"matches": report.matches[: args.top]})
        report.warnings.append(f"all {report.n_candidates_tested} scored candidates written to {args.output}")
    if args.record:
        from splatnlp.mechinterp.store import ResearchStore

        if not report.matches:
            raise CLIError("nothing to record: the report has no matches")
        with ResearchStore() as store:
            link = store.record_link_from_report(report, 0, recorded_by=args.recorded_by)
        report.warnings.append(
            f"recorded link {report.source_model} {link.source_feature} -> {report.target_model} "
            f"{link.target_feature} ({link.relation})"
        )
    _emit(args, report, report.summary())
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    comparison = _matcher(args).compare_features(args.feature, args.target_feature)
    text = (
        f"{comparison.source_model} {comparison.source_feature} vs {comparison.target_model} "
        f"{comparison.target_feature}: {comparison.notes}\n"
        f"  shared tokens {comparison.shared_tokens[:8]}\n"
        f"  source only {comparison.source_only_tokens[:8]}\n"
        f"  target only {comparison.target_only_tokens[:8]}"
    )
    _emit(args, comparison, text)
    return EXIT_OK


def _cmd_decompose(args: argparse.Namespace) -> int:
    d = _matcher(args).find_decomposition(args.feature)
    n_members = len(d.members)
    shown = d.model_copy(update={"members": d.members[: args.limit]})
    r2 = "n/a" if d.r_squared is None else f"{d.r_squared:.3f}"
    lines = [
        f"{d.source_model} feature {d.source_feature}: "
        + (f"split into {n_members} {d.target_model} features" if d.is_split else f"{n_members} member(s), not split")
        + f" (R^2 {r2})"
    ]
    lines += [
        f"  {d.target_model} {m.feature}: weight {m.weight:.3f}, r={m.activation_correlation:.3f}, "
        f"shared {m.shared_top_tokens[:3]}"
        for m in shown.members
    ]
    payload = shown.model_dump(mode="json")
    payload["n_members"] = n_members
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


# -- demo ------------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    if args.export_inputs:
        from splatnlp.mechinterp.demo.build import export_inputs

        paths = export_inputs(args.export_inputs, preset=args.preset, seed=args.seed)
        _emit(args, {"inputs": paths}, "\n".join(f"{role:<13} {path}" for role, path in paths.items()))
        return EXIT_OK
    from splatnlp.mechinterp.demo.build import build_demo
    from splatnlp.mechinterp.demo.sample import sample_match

    summary = build_demo(args.out, preset=args.preset, seed=args.seed, force=args.force, progress=not args.quiet)
    out = Path(args.out) if args.out else None
    from splatnlp.mechinterp import config as cfg

    folder = out or cfg.demo_dir(args.preset)
    sample = sample_match(folder)
    payload = {"demo": summary, "path": str(folder), "sample_match": sample}
    text = (
        f"demo preset {summary['preset']!r} (seed {summary['seed']}): "
        f"{summary['n_examples']} examples, {summary['size_bytes'] / 2**20:.0f} MiB at {folder}\n"
        f"built in {summary['timings']['total_s']} s\n\n{sample['text']}"
    )
    if args.out or args.preset != "default":
        text += (
            f"\n\nTo load these contexts by name: export SPLATNLP_CONTEXTS_DIR={folder}"
        )
    _emit(args, payload, text)
    return EXIT_OK


# -- whole dictionaries ----------------------------------------------------------------------
def _cmd_align(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.analysis.alignment import align_contexts
    from splatnlp.mechinterp.analysis.tables import AlignOptions, check_output_dir, save_tables
    from splatnlp.mechinterp.context import load_context

    # Everything that can be refused is refused before the long pass.
    try:
        out = check_output_dir(args.out)
    except FileExistsError as exc:
        raise CLIError(
            str(exc), hint="pass a new or empty folder, or one an earlier `align` wrote (it is replaced whole)"
        ) from exc
    options = AlignOptions(
        chunk_size=args.chunk_size,
        n_examples=args.examples,
        device=args.device,
        n_null_features=args.null_features,
        n_null_directions=args.null_directions,
        cka=args.cka,
        top_token_method=args.top_tokens,
        seed=args.seed,
    )
    a = load_context(args.a, contexts_dir=args.contexts_dir)
    b = load_context(args.b, contexts_dir=args.contexts_dir)
    tables = align_contexts(a, b, options=options, progress=not args.quiet)
    files = {}
    if not args.no_plots:
        from splatnlp.mechinterp.analysis.plots import save_plots

        files["plots"] = lambda path: save_plots(tables, path)
    save_tables(tables, out, files=files)
    plots = sorted(str(f) for f in (out / "plots").glob("*.png")) if not args.no_plots else []
    payload = {"out": str(out), "plots": plots, "report": tables.report.model_dump(mode="json")}
    text = tables.report.summary() + f"\n  tables written to {out}" + (f" (plots in {out / 'plots'})" if plots else "")
    _emit(args, payload, text)
    return EXIT_OK


# -- plumbing --------------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument(
        "--contexts-dir",
        default=None,
        help="folder of contexts (overrides $SPLATNLP_CONTEXTS_DIR and the config file)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so that usage errors come out as JSON under --json."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message}", hint=f"run `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from splatnlp.mechinterp.analysis.reports import PAIR_METRICS  # light: pydantic models only

    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="splatnlp-mechinterp",
        description="Match SAE features between the SplatNLP Full and Ultra models.",
        epilog=_examples_epilog("splatnlp-mechinterp demo", "splatnlp-mechinterp context list --json")
        + "\n\nexit codes: 0 ok, 1 internal error, 2 bad input, 3 missing context/file, 130 interrupted",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="build the demo contexts (full, ultra) and print a sample match",
        description="Build the deterministic demo world's two contexts and ground truth, then print a sample match.",
        epilog=_examples_epilog("splatnlp-mechinterp demo", "splatnlp-mechinterp demo --preset tiny --out ./demo-tiny --json"),
        formatter_class=fmt,
    )
    demo.add_argument("--preset", default="default", help="tiny, default or real (default: default)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default=None, help="output folder (default: <data dir>/demo/<preset>)")
    demo.add_argument("--force", action="store_true", help="rebuild even if already built")
    demo.add_argument(
        "--export-inputs", default=None, metavar="DIR",
        help="instead of building contexts, write the world's raw inputs (SAE checkpoints, hidden.npy, "
        "builds.jsonl, vocabularies) to DIR, in the formats `context build` reads",
    )
    _add_common(demo)
    demo.set_defaults(func=_cmd_demo)

    def matching_options(p: argparse.ArgumentParser, *, default_source: str) -> None:
        p.add_argument("--source", default=default_source, help=f"source context name or path (default {default_source})")
        p.add_argument("--target", default=None, help="target context (default: the other of ultra/full)")
        p.add_argument(
            "--top-tokens", default="enrichment", choices=["enrichment", "frequency"],
            help="top-token definition for token overlap (default enrichment)",
        )

    match = sub.add_parser(
        "match",
        help="score every feature of the other model against one feature",
        description="Find a feature's counterparts in the other model: every candidate scored exactly.",
        epilog=_examples_epilog(
            "splatnlp-mechinterp match 18712 --source ultra --top 5 --json",
            "splatnlp-mechinterp match 512 --source full --top 3",
        ),
        formatter_class=fmt,
    )
    match.add_argument("feature", type=int, help="source feature id")
    matching_options(match, default_source="ultra")
    match.add_argument("--top", type=int, default=10, help="matches to list (default 10)")
    match.add_argument("--candidates", type=int, default=None, help="keep only the best N by an exact prefilter")
    match.add_argument(
        "--sort-by", default="activation_correlation",
        choices=["combined_score", *PAIR_METRICS],
    )
    match.add_argument("--no-decomposition", action="store_true", help="skip the decomposition")
    match.add_argument("--permutations", type=int, default=0, help="empirical null with N shuffles (default: analytic)")
    match.add_argument("--output", default=None, help="also write every scored candidate to this JSON file")
    match.add_argument("--record", action="store_true", help="record the top match as a cross-model link in the research store")
    match.add_argument("--recorded-by", default="splatnlp-mechinterp match", help="who records the link")
    match.add_argument(
        "--alignment", default=None, metavar="DIR",
        help="tables written by `align`: the report then says what they hold about the feature "
        "(class, parent, children)",
    )
    _add_common(match)
    match.set_defaults(func=_cmd_match)

    compare = sub.add_parser(
        "compare",
        help="every pair metric for one source and one target feature",
        epilog=_examples_epilog("splatnlp-mechinterp compare 18712 1024 --source ultra --json"),
        formatter_class=fmt,
    )
    compare.add_argument("feature", type=int, help="source feature id")
    compare.add_argument("target_feature", type=int, help="target feature id")
    matching_options(compare, default_source="ultra")
    _add_common(compare)
    compare.set_defaults(func=_cmd_compare)

    decompose = sub.add_parser(
        "decompose",
        help="the target features that together account for a source feature (is it split?)",
        epilog=_examples_epilog("splatnlp-mechinterp decompose 512 --source full --limit 10 --json"),
        formatter_class=fmt,
    )
    decompose.add_argument("feature", type=int, help="source feature id")
    matching_options(decompose, default_source="full")
    decompose.add_argument("--limit", type=int, default=20, help="members to list (default 20); n_members gives the total")
    _add_common(decompose)
    decompose.set_defaults(func=_cmd_decompose)

    align = sub.add_parser(
        "align",
        help="align two whole dictionaries: best matches, parents, classes, null, plots",
        description=(
            "Score every feature of A against every feature of B (one streamed pass over the codes), "
            "assign each feature of the larger dictionary to its best-correlated parent, classify "
            "every feature, and write the report, per-feature tables and plots to --out."
        ),
        epilog=_examples_epilog(
            "splatnlp-mechinterp align full ultra --out ./alignment --json",
            "splatnlp-mechinterp match 18712 --source ultra --alignment ./alignment --json",
        ),
        formatter_class=fmt,
    )
    align.add_argument("a", help="context A (name or folder), e.g. full")
    align.add_argument("b", help="context B, e.g. ultra")
    align.add_argument("--out", required=True, help="folder for report.json, tables and plots (replaced whole)")
    align.add_argument("--examples", type=int, default=None, help="use the first N examples only (a quick look)")
    align.add_argument("--chunk-size", type=int, default=2048, help="example rows per streamed chunk (default 2048)")
    align.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    align.add_argument("--null-features", type=int, default=256, help="random features per side in the null (default 256)")
    align.add_argument("--null-directions", type=int, default=256, help="random directions in the decoder null (default 256)")
    align.add_argument("--cka", action="store_true", help="also compute linear CKA between the two code matrices")
    align.add_argument(
        "--top-tokens", default="enrichment", choices=["enrichment", "frequency"],
        help="top-token definition for token overlap (default enrichment)",
    )
    align.add_argument("--seed", type=int, default=0)
    align.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _add_common(align)
    align.set_defaults(func=_cmd_align)

    from splatnlp.mechinterp.cli_state import add_state_commands

    add_state_commands(sub, _add_common)

    context = sub.add_parser(
        "context",
        help="list, show, build and import contexts",
        epilog=_examples_epilog(
            "splatnlp-mechinterp context list --json", "splatnlp-mechinterp context show ultra --json"
        ),
        formatter_class=fmt,
    )
    csub = context.add_subparsers(dest="context_command", required=True, metavar="ACTION")

    ls = csub.add_parser(
        "list",
        help="list the contexts that names resolve to",
        epilog=_examples_epilog("splatnlp-mechinterp context list --json"),
        formatter_class=fmt,
    )
    _add_common(ls)
    ls.set_defaults(func=_cmd_context_list)

    show = csub.add_parser(
        "show",
        help="show one context's manifest and summary",
        epilog=_examples_epilog("splatnlp-mechinterp context show ultra --json"),
        formatter_class=fmt,
    )
    show.add_argument("name", help="context name (ultra, full, ...) or folder path")
    _add_common(show)
    show.set_defaults(func=_cmd_context_show)

    build = csub.add_parser(
        "build",
        help="build a context from an SAE and activations or codes",
        epilog=_examples_epilog(
            "splatnlp-mechinterp context build ./contexts/ultra --sae ultra_sae.pt \\",
            "    --examples builds.jsonl --vocab vocab.json --weapon-vocab weapon_vocab.json \\",
            "    --activations hidden.npy --model-type ultra",
        ),
        formatter_class=fmt,
    )
    build.add_argument("out_dir", help="context folder to create")
    build.add_argument("--sae", required=True, help="SAE file or folder (splatnlp, saelens or sparsify)")
    build.add_argument("--sae-format", default=None, choices=["splatnlp", "saelens", "sparsify"])
    build.add_argument(
        "--examples", required=True, help='.jsonl/.json of {"id", "weapon", "abilities"} records'
    )
    build.add_argument("--vocab", required=True, help="vocab.json {token: id}")
    build.add_argument("--weapon-vocab", required=True, help="weapon_vocab.json {token: id}")
    build.add_argument("--activations", default=None, help="hidden states (n_examples, d_model): .npy or .safetensors")
    build.add_argument("--codes", default=None, help="precomputed codes: .npy (dense) or .npz (scipy sparse)")
    build.add_argument("--name", default=None)
    build.add_argument("--model-type", default=None, help="full, ultra or another label")
    build.add_argument("--device", default="cpu", help="torch device for encoding (cpu, cuda, ...)")
    build.add_argument("--chunk-size", type=int, default=2048)
    build.add_argument("--overwrite", action="store_true")
    _add_common(build)
    build.set_defaults(func=_cmd_context_build)

    imp = csub.add_parser(
        "import-upstream",
        help="import an upstream SplatNLP activation dump (activations/*.zarr + metadata/*.parquet)",
        epilog=_examples_epilog(
            "splatnlp-mechinterp context import-upstream ./dump ./contexts/ultra --sae ultra_sae.pt \\",
            "    --vocab vocab.json --weapon-vocab weapon_vocab.json --model-type ultra",
        ),
        formatter_class=fmt,
    )
    imp.add_argument("dump_dir")
    imp.add_argument("out_dir")
    imp.add_argument("--sae", required=True)
    imp.add_argument("--vocab", required=True)
    imp.add_argument("--weapon-vocab", required=True)
    imp.add_argument("--name", default=None)
    imp.add_argument("--model-type", default=None)
    imp.add_argument("--overwrite", action="store_true")
    _add_common(imp)
    imp.set_defaults(func=_cmd_context_import_upstream)
    return parser


def _error_code(exc: BaseException) -> tuple[int, str | None]:
    from splatnlp.mechinterp.context import DEMO_HINT

    if isinstance(exc, CLIError):
        return exc.code, exc.hint
    if isinstance(exc, FileNotFoundError):
        return EXIT_MISSING, "check the path; " + DEMO_HINT + " if you need the demo contexts"
    if isinstance(exc, KeyError):
        return EXIT_MISSING, f"run `splatnlp-mechinterp context list` to see known contexts; {DEMO_HINT}"
    if isinstance(exc, FileExistsError):
        return EXIT_BAD_INPUT, "pass --overwrite to replace it"
    if isinstance(exc, (ValueError, TypeError, NotImplementedError, ImportError)):
        return EXIT_BAD_INPUT, None
    return EXIT_INTERNAL, "this is a bug; please report it with the command you ran"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do, and keep the
        # interpreter from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message and an exit code
        code, hint = _error_code(exc)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if as_json:
            print(json.dumps({"error": {"type": type(exc).__name__, "message": message, "hint": hint}}))
        else:
            print(f"error: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
