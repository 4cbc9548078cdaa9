"""``splatnlp-mechinterp``: a thin command-line shell over the Python API.

Every command prints a short readable summary, or with ``--json`` exactly one JSON document on
stdout. Logs and progress go to stderr. Errors with ``--json`` are JSON too::

    {"error": {"type": "KeyError", "message": "...", "hint": "..."}}

Exit codes: 0 ok; 1 unexpected internal error; 2 bad input (bad arguments or values, unknown
names); 3 something needed is missing (a context, a file, the demo); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
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


# -- demo ------------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
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
    _add_common(demo)
    demo.set_defaults(func=_cmd_demo)

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
