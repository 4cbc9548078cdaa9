"""``splatnlp-mechinterp context ...``: list, show, build and import contexts.

A thin shell over :mod:`splatnlp.mechinterp.context`; the API is imported inside each handler,
so that building the parser stays light.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from splatnlp.mechinterp.cli.common import EXIT_OK, CLIError, add_common, emit, examples_epilog


# -- handlers --------------------------------------------------------------------------------
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
    emit(args, {"contexts": entries}, "\n".join(lines))
    return EXIT_OK


def _cmd_context_show(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context import load_context

    ctx = load_context(args.name, contexts_dir=args.contexts_dir)
    summary = ctx.summary()
    emit(args, summary, summary.to_text())
    return EXIT_OK


def _read_examples_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"examples file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".jsonl":
        lines = text.rstrip("\n").split("\n") if text.strip() else []
        records = []
        for number, line in enumerate(lines, start=1):
            # Record n is line n + 1, which is what the example set's errors quote.
            if not line.strip():
                raise ValueError(f"examples file {str(path)!r} line {number} is empty; expected one JSON record per line")
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"examples file {str(path)!r} line {number} is not valid JSON: {exc}") from exc
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"examples file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError(f"examples file {str(path)!r} must hold a JSON list of example records")
    return data


def _cmd_context_build(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context import build_context

    if (args.activations is None) == (args.codes is None):
        raise CLIError("pass exactly one of --activations and --codes")
    from splatnlp.mechinterp.context.sae import load_sae

    ctx = build_context(
        args.out_dir,
        sae=load_sae(args.sae, format=args.sae_format),
        examples=_read_examples_file(Path(args.examples)),
        vocab=args.vocab,
        weapon_vocab=args.weapon_vocab,
        activations=args.activations,
        codes=args.codes,
        keep_activations=not args.no_activations,
        name=args.name,
        model_type=args.model_type,
        device=args.device,
        chunk_size=args.chunk_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = ctx.summary()
    emit(args, summary, summary.to_text())
    return EXIT_OK


def _cmd_context_import_upstream(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.context.importers import import_upstream_dump

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
    emit(args, summary, summary.to_text())
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------
def add_context_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``context`` command group (list, show, build, import-upstream)."""
    fmt = argparse.RawDescriptionHelpFormatter
    context = subparsers.add_parser(
        "context",
        help="list, show, build and import contexts",
        epilog=examples_epilog(
            "splatnlp-mechinterp context list --json", "splatnlp-mechinterp context show ultra --json"
        ),
        formatter_class=fmt,
    )
    csub = context.add_subparsers(dest="context_command", required=True, metavar="ACTION")

    ls = csub.add_parser(
        "list",
        help="list the contexts that names resolve to",
        epilog=examples_epilog("splatnlp-mechinterp context list --json"),
        formatter_class=fmt,
    )
    add_common(ls)
    ls.set_defaults(func=_cmd_context_list)

    show = csub.add_parser(
        "show",
        help="show one context's manifest and summary",
        epilog=examples_epilog("splatnlp-mechinterp context show ultra --json"),
        formatter_class=fmt,
    )
    show.add_argument("name", help="context name (ultra, full, ...) or folder path")
    add_common(show)
    show.set_defaults(func=_cmd_context_show)

    build = csub.add_parser(
        "build",
        help="build a context from an SAE and activations or codes",
        epilog=examples_epilog(
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
        "--examples",
        required=True,
        help='.jsonl/.json of {"id", "weapon", "abilities"} (SplatNLP builds) or {"id", "tokens"} records',
    )
    build.add_argument("--vocab", required=True, help="vocab.json {token: id}")
    build.add_argument(
        "--weapon-vocab", default=None, help="weapon_vocab.json {token: id}; needed for builds, not for tokens"
    )
    build.add_argument("--activations", default=None, help="hidden states (n_examples, d_model): .npy or .safetensors")
    build.add_argument("--codes", default=None, help="precomputed codes: .npy (dense) or .npz (scipy sparse)")
    build.add_argument("--name", default=None)
    build.add_argument("--model-type", default=None, help="full, ultra or another label")
    build.add_argument("--device", default="cpu", help="torch device for encoding (cpu, cuda, ...)")
    build.add_argument("--chunk-size", type=int, default=2048)
    build.add_argument("--overwrite", action="store_true")
    build.add_argument(
        "--no-activations",
        action="store_true",
        help="do not keep the activations in the context (the stitching test of novelty needs them)",
    )
    add_common(build)
    build.set_defaults(func=_cmd_context_build)

    imp = csub.add_parser(
        "import-upstream",
        help="import an upstream SplatNLP activation dump (activations/*.zarr + metadata/*.parquet)",
        epilog=examples_epilog(
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
    add_common(imp)
    imp.set_defaults(func=_cmd_context_import_upstream)
