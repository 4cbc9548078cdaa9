"""Build evaluation worlds: true features, two SAELens-trained SAEs, contexts, ground truth.

Usage (from the repository root, in an environment with ``sae-lens``)::

    python -m benchmarks.worlds.build --out /work/worlds --all
    python -m benchmarks.worlds.build --out /work/worlds --split dev
    python -m benchmarks.worlds.build --out /work/worlds --world dev_topk_8x_samek_d1

Each world ``DIR/<name>/`` receives::

    synthetic_model/      SAELens SyntheticModel.save (config, feature vectors, hierarchy)
    activations.npy       float32 (n_examples, d_in): the evaluation set
    true_features.npz     scipy CSR (n_examples, n_true): the true feature activations behind it
    saes/full, saes/ultra SAELens inference SAEs (cfg.json + sae_weights.safetensors)
    inputs/               tokens.jsonl + vocab.json (what the contexts are built from), and the
                          same tokens as SplatNLP builds (builds.jsonl + weapon_vocab.json)
    full/, ultra/         contexts, built with `splatnlp-mechinterp context build --examples
                          inputs/tokens.jsonl --vocab inputs/vocab.json` as a user would
    ground_truth.json     spec, split, metrics, timings, per-latent truth (rules in truth.py)

Worlds are built one at a time with one torch thread: on this shared 2-core machine two threads
made SAELens's training step 5-13x slower (measured: 17 vs 222 ms per step for 128 latents).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from benchmarks.worlds import inputs, synthetic, train, truth
from benchmarks.worlds.lock import WorldLocked, world_lock
from benchmarks.worlds.registry import WorldSpec, get_world, worlds_in_split

__all__ = ["build_world", "cli_command", "main"]


def cli_command() -> list[str]:
    """The ``splatnlp-mechinterp`` command of this interpreter's environment."""
    exe = Path(sys.executable).with_name("splatnlp-mechinterp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "splatnlp.mechinterp"]


def _single_thread_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


def _run_cli(args: list[str], *, retries: int = 3, wait_s: float = 60.0) -> str:
    """Run the public CLI; retry when the package is mid-restructure (an import error)."""
    for attempt in range(retries + 1):
        proc = subprocess.run(
            cli_command() + args, capture_output=True, text=True, env=_single_thread_env()
        )
        if proc.returncode == 0:
            return proc.stdout
        transient = "ImportError" in proc.stderr or "ModuleNotFoundError" in proc.stderr
        if not transient or attempt == retries:
            raise RuntimeError(
                f"`splatnlp-mechinterp {' '.join(args)}` exited {proc.returncode}:\n"
                f"{proc.stderr[-4000:]}"
            )
        print(f"  CLI import failed (package moving?); retrying in {wait_s:.0f} s", flush=True)
        time.sleep(wait_s)
    raise AssertionError("unreachable")


def _build_context(world_dir: Path, model_type: str, paths: dict[str, Path]) -> float:
    """Build one context from the generic ``{"id", "tokens"}`` file (no weapon vocabulary)."""
    start = time.perf_counter()
    _run_cli(
        [
            "context", "build", str(world_dir / model_type),
            "--sae", str(world_dir / "saes" / model_type),
            "--sae-format", "saelens",
            "--examples", str(paths["tokens"]),
            "--vocab", str(paths["vocab"]),
            "--activations", str(world_dir / "activations.npy"),
            "--model-type", model_type,
            "--name", f"{world_dir.name}-{model_type}",
            "--overwrite", "--quiet",
        ]
    )  # fmt: skip
    return time.perf_counter() - start


def _loader_check(context_dir: Path, codes: np.ndarray) -> dict[str, Any]:
    """Our context's codes against SAELens's own encode of the same activations."""
    from splatnlp.mechinterp.context import load_context

    ours = load_context(context_dir).codes.csr
    ref = sp.csr_matrix(codes)
    diff = abs(ours - ref)
    scale = float(np.abs(codes).max()) or 1.0
    support_mismatch = int(((ours > 0) != (ref > 0)).nnz)
    return {
        "max_abs_diff": float(diff.max()) if diff.nnz else 0.0,
        "relative_to_max_code": (float(diff.max()) if diff.nnz else 0.0) / scale,
        "support_mismatch_entries": support_mismatch,
        "nnz_ours": int(ours.nnz),
        "nnz_saelens": int(ref.nnz),
    }


def _list(a: np.ndarray) -> list[Any]:
    return [None if isinstance(x, float) and not np.isfinite(x) else x for x in a.tolist()]


def build_world(spec: WorldSpec, out: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Build one world into ``out/<spec.name>`` (skipped when its ground truth exists, unless
    ``force``), holding its lock (:func:`.lock.world_lock`: a second builder of the same world
    is refused). Returns the ground-truth document written."""
    gt_path = Path(out) / spec.name / "ground_truth.json"
    if gt_path.exists() and not force:
        print(f"{spec.name}: exists, skipped (--force rebuilds)", flush=True)
        return json.loads(gt_path.read_text())
    Path(out).mkdir(parents=True, exist_ok=True)
    with world_lock(out, spec.name):
        # Checked again under the lock: another builder may have finished it meanwhile.
        if gt_path.exists() and not force:
            print(f"{spec.name}: built by another process meanwhile, skipped", flush=True)
            return json.loads(gt_path.read_text())
        return _build_world(spec, Path(out) / spec.name)


def _build_world(spec: WorldSpec, world_dir: Path) -> dict[str, Any]:
    gt_path = world_dir / "ground_truth.json"
    if world_dir.exists():
        shutil.rmtree(world_dir)
    world_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    model, warnings = synthetic.make_model(spec)
    forest = synthetic.forest_of(model)
    model.save(world_dir / "synthetic_model")
    t = time.perf_counter()
    pool, _ = synthetic.sample(model, spec.pool_size, seed=spec.seed + 1)
    hidden, features = synthetic.sample(model, spec.n_examples, seed=spec.seed + 2)
    timings["sample_s"] = time.perf_counter() - t
    np.save(world_dir / "activations.npy", hidden)
    sp.save_npz(world_dir / "true_features.npz", features)
    true_active = np.asarray((features > 0).sum(0)).ravel()
    true_l0 = float((features > 0).sum(1).mean())
    print(
        f"{spec.name} [{spec.split}]: {spec.n_true} true features ({int((forest.depth >= 0).sum())} "
        f"in trees of depth {spec.depth}), true L0 {true_l0:.2f}, d_in {spec.d_in}; "
        f"{'; '.join(warnings) or 'no SAELens warnings'}",
        flush=True,
    )

    pool_t = torch.from_numpy(pool)
    metrics, latent_truth, loader = {}, {}, {}
    for offset, (model_type, sae_spec) in enumerate((("full", spec.full), ("ultra", spec.ultra))):
        sae_dir, seconds = train.train_sae(
            sae_spec, pool_t, world_dir / "saes" / model_type, seed=spec.seed + 10 + offset
        )
        codes, recon = train.encode(sae_dir, hidden)
        metrics[model_type] = asdict(train.sae_metrics(codes, recon, hidden, seconds))
        latent_truth[model_type] = truth.best_features(codes, features)
        print(
            f"  {model_type}: {sae_spec.architecture} d_sae {sae_spec.d_sae} trained in {seconds:.0f} s; "
            f"L0 {metrics[model_type]['l0']:.1f} (target {sae_spec.target_l0:g}), "
            f"FVU {metrics[model_type]['fvu']:.3f}, dead {metrics[model_type]['n_dead']}",
            flush=True,
        )
        latent_truth[model_type + "_codes"] = codes
    del pool, pool_t

    paths = inputs.write_inputs(world_dir / "inputs", features, seed=spec.seed + 3)
    for model_type in ("full", "ultra"):
        timings[f"context_{model_type}_s"] = _build_context(world_dir, model_type, paths)
        loader[model_type] = _loader_check(
            world_dir / model_type, latent_truth.pop(model_type + "_codes")
        )
        if (
            loader[model_type]["relative_to_max_code"] > 1e-4
            or loader[model_type]["support_mismatch_entries"]
        ):
            print(
                f"  WARNING {model_type}: context codes differ from SAELens's: {loader[model_type]}",
                flush=True,
            )

    full_t, ultra_t = latent_truth["full"], latent_truth["ultra"]
    relations = truth.expected_relations(full_t, ultra_t, forest)
    category = relations["category"]
    counts = {
        "full_live": int((~full_t.dead).sum()),
        "full_tracking": int(full_t.tracks.sum()),
        "ultra_live": int((~ultra_t.dead).sum()),
        "ultra_tracking": int(ultra_t.tracks.sum()),
        "ultra_untracked": category.count("untracked"),
        "ultra_novel": category.count("novel"),
        "ultra_children": category.count("child"),
        "same_feature_pairs": len(relations["same_feature_pairs"]),
        "full_split": sum(len(s) >= 2 for s in relations["expected_split"]),
        "split_pairs": len(relations["split_pairs"]),
        "equivalent_pairs": len(relations["equivalent_pairs"]),
    }
    hist = {m: truth.r_histogram(latent_truth[m]) for m in ("full", "ultra")}
    timings["total_s"] = time.perf_counter() - t0
    doc: dict[str, Any] = {
        "schema_version": 1,
        "world": spec.name,
        "split": spec.split,
        "seed": spec.seed,
        "spec": spec.to_dict(),
        "sae_lens_warnings": warnings,
        "rules": {
            "tracks_min_r": truth.TRACKS_MIN_R,
            "text": truth.__doc__,
        },
        "true_features": {
            "n": spec.n_true,
            "true_l0": true_l0,
            "parent": forest.parent.tolist(),
            "depth": forest.depth.tolist(),
            "n_active_examples": true_active.tolist(),
        },
        "metrics": metrics,
        "loader_check": loader,
        "timings": timings,
        "counts": counts,
        "best_r_histogram": hist,
        "full": {
            "n_latents": spec.full.d_sae,
            "best_feature": full_t.best_feature.tolist(),
            "best_r": _list(full_t.best_r),
            "tracks": full_t.tracks.tolist(),
            "dead": full_t.dead.tolist(),
        },
        "ultra": {
            "n_latents": spec.ultra.d_sae,
            "best_feature": ultra_t.best_feature.tolist(),
            "best_r": _list(ultra_t.best_r),
            "tracks": ultra_t.tracks.tolist(),
            "dead": ultra_t.dead.tolist(),
            "expected_parents": relations["expected_parents"],
            "category": category,
        },
        "same_feature_pairs": relations["same_feature_pairs"],
        "expected_split": relations["expected_split"],
        "split_pairs": relations["split_pairs"],
        "equivalent_pairs": relations["equivalent_pairs"],
    }
    gt_path.write_text(json.dumps(doc))
    print(f"  best-r histogram full {hist['full']}", flush=True)
    print(f"  best-r histogram ultra {hist['ultra']}", flush=True)
    print(f"  counts {counts}", flush=True)
    print(
        f"  built in {timings['total_s']:.0f} s (sampling {timings['sample_s']:.0f} s, "
        f"training {metrics['full']['train_seconds'] + metrics['ultra']['train_seconds']:.0f} s, "
        f"contexts {timings['context_full_s'] + timings['context_ultra_s']:.0f} s)",
        flush=True,
    )
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="worlds directory")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--world", action="append", help="a registered world (repeatable)")
    which.add_argument("--all", action="store_true", help="every registered world")
    which.add_argument("--split", choices=("dev", "test"), help="every world of one split")
    parser.add_argument("--force", action="store_true", help="rebuild worlds that exist")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.world:
        specs = [get_world(name) for name in args.world]
    else:
        specs = worlds_in_split("all" if args.all else args.split)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "registry.json").write_text(
        json.dumps({w.name: w.split for w in worlds_in_split("all")}, indent=2)
    )
    busy = []
    for spec in specs:
        try:
            build_world(spec, args.out, force=args.force)
        except WorldLocked as err:  # another process builds it: go on with the others
            print(f"{spec.name}: skipped, {err}", flush=True)
            busy.append(spec.name)
    if busy:
        print(f"not built here (another process holds their lock): {', '.join(busy)}", flush=True)
    return 1 if busy else 0


if __name__ == "__main__":
    raise SystemExit(main())
