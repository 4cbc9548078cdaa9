"""Build the demo contexts (``full``, ``ultra``) and their ground truth into one folder.

Layout of ``<out>/`` (by default ``<data dir>/demo/<preset>``)::

    full/            a context (2,048 features)
    ultra/           a context (24,576 features)
    ground_truth.json  the planted answer (see :class:`GroundTruth`); never read by library code
    demo.yaml        preset, seed, timings
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from splatnlp.mechinterp.context import build_context, read_manifest
from splatnlp.mechinterp.context import config as cfg
from splatnlp.mechinterp.context.folders import publish_dir, staging_dir
from splatnlp.mechinterp.demo.world import PRESETS, GroundTruth, generate_world

GROUND_TRUTH_FILE = "ground_truth.json"
DEMO_MANIFEST = "demo.yaml"


def _log(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def demo_is_built(out_dir: str | Path, *, seed: int | None = None) -> bool:
    """True when ``out_dir`` holds a complete demo build (of ``seed``, when given)."""
    out_dir = Path(out_dir)
    meta = out_dir / DEMO_MANIFEST
    if not (meta.is_file() and (out_dir / GROUND_TRUTH_FILE).is_file()):
        return False
    try:
        info = yaml.safe_load(meta.read_text())
        for name in ("full", "ultra"):
            read_manifest(out_dir / name)
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return seed is None or info.get("seed") == seed


def build_demo(
    out_dir: str | Path | None = None,
    *,
    preset: str = "default",
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the demo world and build its two contexts; return the build summary.

    Skips the work when a complete build of the same seed is already there (unless ``force``).
    The whole preset folder is written beside its target and renamed into place at the end.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}; known: {sorted(PRESETS)}")
    out_dir = Path(out_dir) if out_dir is not None else cfg.demo_dir(preset)
    if not force and demo_is_built(out_dir, seed=seed):
        _log(f"demo preset {preset!r} is already built in {out_dir}", progress)
        return yaml.safe_load((out_dir / DEMO_MANIFEST).read_text())
    t0 = time.perf_counter()
    _log(f"generating demo world {preset!r} (seed {seed}) ...", progress)
    world = generate_world(preset, seed=seed)
    t_gen = time.perf_counter() - t0

    tmp = staging_dir(out_dir)
    timings = {"generate_s": round(t_gen, 2)}
    try:
        for name, sae in (("full", world.full_sae), ("ultra", world.ultra_sae)):
            t = time.perf_counter()
            _log(f"building context {name!r} ({sae.n_features} features) ...", progress)
            build_context(
                tmp / name,
                sae=sae,
                examples=world.examples,
                activations=world.activations,
                model_type=name,
                source=f"splatnlp-mechinterp demo world, preset {preset!r}, seed {seed}",
                provenance={"demo_preset": preset, "demo_seed": seed},
                progress=progress,
            )
            timings[f"build_{name}_s"] = round(time.perf_counter() - t, 2)
        (tmp / GROUND_TRUTH_FILE).write_text(json.dumps(world.truth.to_dict()))
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        timings["total_s"] = round(time.perf_counter() - t0, 2)
        summary = {
            "preset": preset,
            "seed": seed,
            "n_examples": world.examples.n_examples,
            "fingerprint": world.examples.fingerprint,
            "size_bytes": size,
            "timings": timings,
        }
        if world.truth.training is not None:
            summary["training"] = world.truth.training
        (tmp / DEMO_MANIFEST).write_text(yaml.safe_dump(summary, sort_keys=False))
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _log(f"demo built in {timings['total_s']} s, {size / 2**20:.0f} MiB, at {out_dir}", progress)
    return summary


def export_inputs(out_dir: str | Path, *, preset: str = "tiny", seed: int = 0) -> dict[str, str]:
    """Write a demo world's raw inputs in the formats ``context build`` reads: both SAEs as
    SplatNLP checkpoints, the hidden states as .npy, the builds as JSON lines, both vocabularies.

    Returns the written paths by role. Useful as a template for one's own data.
    """
    import numpy as np

    from splatnlp.mechinterp.context.sae import save_sae

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = generate_world(preset, seed=seed)
    paths = {
        "full_sae": save_sae(world.full_sae, out_dir / "full_sae.pt"),
        "ultra_sae": save_sae(world.ultra_sae, out_dir / "ultra_sae.pt"),
        "activations": out_dir / "hidden.npy",
        "examples": out_dir / "builds.jsonl",
        "vocab": out_dir / "vocab.json",
        "weapon_vocab": out_dir / "weapon_vocab.json",
    }
    np.save(paths["activations"], world.activations)
    ex = world.examples
    with open(paths["examples"], "w") as fh:
        for i in range(ex.n_examples):
            fh.write(json.dumps(ex.record(i)) + "\n")
    ex.vocab.to_json(paths["vocab"])
    ex.weapon_vocab.to_json(paths["weapon_vocab"])
    return {role: str(path) for role, path in paths.items()}


def load_ground_truth(demo_dir: str | Path) -> GroundTruth:
    """The planted answer of a built demo (for tests, benchmarks and evaluation only)."""
    path = Path(demo_dir) / GROUND_TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no demo ground truth at {str(path)!r}; build the demo first")
    return GroundTruth.from_dict(json.loads(path.read_text()))
