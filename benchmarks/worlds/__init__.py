"""Evaluation worlds: SAELens synthetic data, SAELens-trained Full/Ultra SAEs, ground truth.

``python -m benchmarks.worlds.build`` builds them; ``benchmarks/eval_worlds.py`` scores the
alignment's verdicts on them; :mod:`benchmarks.worlds.scoring` holds the metric helpers (no
sae-lens needed to import it).
"""

from benchmarks.worlds.registry import SAESpec, WorldSpec, get_world, worlds_in_split

__all__ = ["SAESpec", "WorldSpec", "get_world", "worlds_in_split"]
