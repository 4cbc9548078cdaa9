"""The saved result of whole-dictionary alignment: per-feature tables, saved and loaded.

:func:`splatnlp.mechinterp.analysis.align.dictionary.align_contexts` computes an :class:`AlignmentTables`;
:func:`save_tables` writes it and :func:`load_tables` reads it back, so that queries (the
matcher, the CLI, plots) can use a finished alignment without recomputing it. The report models are in
:mod:`splatnlp.mechinterp.analysis.align.report`; this module holds no numerical code and
imports nothing heavier than numpy and pydantic.

Saved layout of :func:`save_tables` (``load_tables`` reads it back)::

    report.json            the AlignmentReport (options, fingerprints, summaries, timings)
    a/<array>.npy          per-feature arrays of side A, shape (K_a,), listed in SIDE_ARRAYS
    b/<array>.npy          the same for side B, shape (K_b,)
    block/<array>.npy      the heatmap block, listed in BLOCK_ARRAYS
    null/<array>.npy       null samples, listed in NULL_ARRAYS
    features.csv           one row per feature of both models (FEATURE_COLUMNS): a stable table
                           for spreadsheets, pandas and agents
    index/                 the pair index (dot, coactive, decoder .npy of shape (K_a, K_b) and
                           index.json): see :mod:`splatnlp.mechinterp.analysis.align.index`

Arrays: ``best_<metric>_index`` (int64, -1 = none) and ``best_<metric>_score`` (float64, NaN =
none) for each metric in :data:`METRICS`; ``count`` (int64, examples where active); ``parent``
(int64: on the larger side, the assigned feature of the smaller side, -1 = none; on the smaller
side all -1), ``parent_score`` (its correlation, NaN = none) and ``parent_decoder_cosine`` (the
pair's decoder cosine, NaN = none), ``parent_coactive_correlation`` (the pair's correlation over
the examples where both are active, NaN = none) and ``parent_coactive_count`` (int64, how many
such examples; 0 = none); ``nesting`` (larger side: the chance-corrected share of the
feature's activation inside its best-correlated smaller-side feature, 95 % lower bound; NaN on
the smaller side); ``n_assigned`` (int64: on the
smaller side, how many larger-side features were assigned to it; 0 on the larger side);
``hungarian`` / ``hungarian_score`` (the one-to-one partner, -1 / NaN when skipped or unpaired);
``class_label`` (fixed-width unicode, see :data:`SMALL_CLASSES` and :data:`LARGE_CLASSES`).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from splatnlp.mechinterp.analysis.align.index import INDEX_DIR, write_index
from splatnlp.mechinterp.analysis.align.report import (
    BLOCK_ARRAYS,
    METRICS,
    NULL_ARRAYS,
    SIDE_ARRAYS,
    AlignedBest,
    AlignedFeature,
    AlignmentReport,
)
from splatnlp.mechinterp.analysis.metrics import verdicts as V
from splatnlp.mechinterp.analysis.metrics.results import none_reasons
from splatnlp.mechinterp.context.folders import publish_dir, staging_dir

__all__ = [
    "FEATURE_COLUMNS",
    "AlignmentTables",
    "check_output_dir",
    "feature_rows",
    "larger_side_confidence",
    "load_tables",
    "save_tables",
]

FEATURES_CSV = "features.csv"
_SWAPPED = {"p_target_given_source": "p_source_given_target", "p_source_given_target": "p_target_given_source"}
"""The alignment names its containments with ``a`` as the source (``p_target_given_source`` is
P(b active | a active)); a ``b`` feature's own view (:class:`AlignedFeature`, ``features.csv``)
swaps the two, so that ``p_target_given_source`` always reads P(other | this)."""
FEATURE_COLUMNS: tuple[str, ...] = (
    "model",
    "feature",
    "class",
    "parent",
    "parent_score",
    "parent_decoder_cosine",
    "parent_coactive_correlation",
    "parent_coactive_count",
    "nesting",
    "error_ratio",
    "siblings_inside",
    "inside_siblings",
    "parent_proportionality",
    "sibling_proportionality",
    "rival",
    "rival_score",
    "confidence",
    "n_children",
    "count",
    *(
        f"best_{name}{suffix}"
        for name in ("activation_correlation", "coactivation_jaccard", "p_target_given_source",
                     "p_source_given_target", "decoder_cosine", "top_token_overlap")
        for suffix in ("", "_score")
    ),
)
"""Columns of ``features.csv``, one row per feature of both models (side A first): ``class``
(see SMALL_CLASSES / LARGE_CLASSES), ``parent`` (larger side: the smaller-side feature it was
assigned to, empty when none), ``parent_score`` (that pair's activation correlation, the
evidence the assignment rests on), ``parent_decoder_cosine`` and ``parent_coactive_correlation``
(the pair's correlation over the examples where both are active, measured on
``parent_coactive_count`` of them: the evidence of ``equivalent``), ``nesting`` (larger side: the share of its activation inside its best-correlated smaller-side
feature beyond chance, 95 % lower bound; a parent below the correlation cut needs >= 0.5),
``error_ratio`` (larger side: the smaller SAE's fraction of variance unexplained where the feature
fires, weighted by its squared code, over its fraction everywhere: the information test of
``novel``; below the correlation cut a nested feature, or one with r >= 0.25, has a parent only
when it is <= 1.04, unless nested beyond doubt (nesting >= 0.8); empty when the smaller context kept no activations),
``siblings_inside`` and ``inside_siblings`` (larger side, beside siblings, i.e. other features
with the same parent: how much of their activation lies on its active examples beyond chance, and
the reverse, means over them; ``equivalent`` by siblings when the first is >= 0.6 and exceeds the
second by >= 0.45 with r >= 0.5), ``parent_proportionality`` (larger side: how close it is to a
multiple of its parent where the parent is active, a squared cosine) and ``sibling_proportionality``
(the median of its siblings'; ``equivalent`` by proportionality when the first is >= 0.5 and
exceeds the second, or 0 without siblings, by >= 0.2 with r >= 0.5), ``rival`` and ``rival_score``
(larger side, with a parent: the other model's feature unrelated to the parent, |r| < 0.2 with
it, that correlates best with this one, and that correlation; at >= 0.5 of ``parent_score`` the
feature may mix two features), ``confidence`` (larger side: ``high`` or ``low``, how often such a verdict was right on the
evaluation worlds, ``verdicts.confidence``; empty on the smaller side and for dead features),
``n_children`` (smaller side: larger-side features assigned
to it), ``count`` (examples where active), and per metric the best match in the other model
(``best_<metric>``, empty when none) with its score (``best_<metric>_score``). Containments are
named from the row's own feature: ``p_target_given_source`` = P(other active | this active)."""


@dataclass(eq=False)
class AlignmentTables:
    """What :func:`align_contexts` returns: the report, per-feature arrays of both sides
    (names in :data:`SIDE_ARRAYS`), the heatmap block and null samples the plots draw
    (names in :data:`BLOCK_ARRAYS` and :data:`NULL_ARRAYS`), and the (K_a, K_b) matrices when
    ``keep_matrices``."""

    report: AlignmentReport
    a: dict[str, np.ndarray]
    b: dict[str, np.ndarray]
    block: dict[str, np.ndarray]
    null: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray] | None = None
    source: Path | None = None
    """The folder these tables were loaded from (None when computed in memory)."""
    index: dict[str, np.ndarray] | None = None
    """The pair sums ``save_tables`` writes as the pair index (``dot``, ``coactive``,
    ``decoder``: (K_a, K_b) each; ``children_offsets``, ``children_gram``, ``children_covered``:
    1-d, each smaller-side feature's children's sums, with numba), kept by
    ``AlignOptions(keep_index=True)``; None once loaded (the matcher memory-maps
    ``<folder>/index/`` itself)."""
    index_meta: dict[str, Any] | None = None
    """The index's identity (:func:`~splatnlp.mechinterp.analysis.align.index.index_meta`)."""

    def side(self, model: str) -> tuple[Literal["a", "b"], dict[str, np.ndarray]]:
        """The side ('a' or 'b') whose model type or context name is ``model``, and its arrays."""
        r = self.report
        for key, names, arrays in (
            ("a", (r.a_model, r.a_name), self.a),
            ("b", (r.b_model, r.b_name), self.b),
        ):
            if model in names:
                return key, arrays
        raise KeyError(
            f"model {model!r} is not in this alignment; expected one of "
            f"{sorted({r.a_model, r.a_name, r.b_model, r.b_name})}"
        )

    def lookup(self, model: str, feature: int) -> AlignedFeature:
        """Everything this alignment holds about ``feature`` of ``model`` (a model type or
        context name of either side), without touching any codes."""
        key, arrays = self.side(model)
        r = self.report
        k = r.n_features_a if key == "a" else r.n_features_b
        if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not 0 <= feature < k:
            raise ValueError(f"feature {feature!r} is out of range for {model!r} (0..{k - 1})")
        feature = int(feature)
        other = self.b if key == "a" else self.a
        larger = key == r.larger_side
        # Own-perspective names for the two containments (see AlignedFeature).
        names = {} if key == "a" else _SWAPPED
        best = {}
        for metric in METRICS:
            index = int(arrays[f"best_{metric}_index"][feature])
            score = float(arrays[f"best_{metric}_score"][feature])
            best[names.get(metric, metric)] = None if index < 0 else AlignedBest(feature=index, score=score)
        children = np.zeros(0, dtype=np.int64)
        if not larger:
            children = np.flatnonzero(other["parent"] == feature)
            children = children[np.argsort(-other["parent_score"][children], kind="stable")]
        parent = int(arrays["parent"][feature])
        partner = int(arrays["hungarian"][feature])
        aligned = AlignedFeature(
            model=r.a_model if key == "a" else r.b_model,
            feature=feature,
            other_model=r.b_model if key == "a" else r.a_model,
            class_label=str(arrays["class_label"][feature]),
            count=int(arrays["count"][feature]),
            parent=parent if parent >= 0 else None,
            parent_score=float(arrays["parent_score"][feature]) if parent >= 0 else None,
            parent_decoder_cosine=_finite(arrays["parent_decoder_cosine"][feature]) if parent >= 0 else None,
            parent_coactive_correlation=_finite(arrays["parent_coactive_correlation"][feature]) if parent >= 0 else None,
            parent_coactive_count=int(arrays["parent_coactive_count"][feature]) if parent >= 0 else None,
            nesting=_finite(arrays["nesting"][feature]),
            error_ratio=_finite(arrays["error_ratio"][feature]),
            siblings_inside=_finite(arrays["siblings_inside"][feature]),
            inside_siblings=_finite(arrays["inside_siblings"][feature]),
            parent_proportionality=_finite(arrays["parent_proportionality"][feature]),
            sibling_proportionality=_finite(arrays["sibling_proportionality"][feature]),
            rival=int(arrays["rival"][feature]) if arrays["rival"][feature] >= 0 else None,
            rival_score=_finite(arrays["rival_score"][feature]),
            confidence=(larger_side_confidence(arrays, feature)[0] or None) if larger else None,
            children=children.tolist(),
            children_scores=other["parent_score"][children].tolist(),
            hungarian=partner if partner >= 0 else None,
            hungarian_score=float(arrays["hungarian_score"][feature]) if partner >= 0 else None,
            best=best,
            alignment=str(self.source) if self.source else "memory",
        )
        aligned.undefined = _aligned_null_reasons(aligned, larger=larger, hungarian_skipped=r.hungarian_skipped)
        return aligned


def _aligned_null_reasons(a: AlignedFeature, *, larger: bool, hungarian_skipped: str | None) -> dict[str, str]:
    """Why each None of an :class:`AlignedFeature` is None."""
    parent_fields = ("parent", "parent_score", "parent_decoder_cosine", "parent_coactive_correlation", "parent_coactive_count")
    if not larger:
        why = dict.fromkeys(parent_fields, f"the smaller side ({a.model}) has children (see children), not a parent")
        why["nesting"] = "the nesting test is for the larger side's features (the parent rule)"
    elif a.parent is None:
        why = dict.fromkeys(parent_fields, f"no parent: the class is {a.class_label}")
        why["nesting"] = "no best candidate (no correlation is defined), or it is active on every example"
    else:
        why = {
            "parent_decoder_cosine": "undefined: a decoder row has zero norm",
            "parent_coactive_correlation": (
                f"fewer than 3 examples where both are active, or no variance there ({a.parent_coactive_count} co-active)"
            ),
            "nesting": "undefined: the parent is active on every example",
        }
    why["error_ratio"] = (
        "the information test is for the larger side's features (the parent rule)" if not larger
        else "not computed: the smaller context kept no activations (see the report's notes), or "
        "the feature is active on fewer than min_active examples"
    )
    why["siblings_inside"] = why["inside_siblings"] = (
        "the sibling evidence is for the larger side's features" if not larger
        else f"no parent: the class is {a.class_label}" if a.parent is None
        else "no sibling: no other feature has this parent (or none has a defined share)"
    )
    why["parent_proportionality"] = (
        "the proportionality evidence is for the larger side's features" if not larger
        else f"no parent: the class is {a.class_label}" if a.parent is None
        else "undefined: no example where both are active"
    )
    why["sibling_proportionality"] = (
        why["parent_proportionality"] if not larger or a.parent is None
        else "no sibling: no other feature has this parent (or none has a defined proportionality)"
    )
    why["rival"] = why["rival_score"] = (
        "the rival is for the larger side's parent verdicts" if not larger
        else f"no parent: the class is {a.class_label}" if a.parent is None
        else "no feature unrelated to the parent (|r| < 0.2 with it) correlates positively with this one"
    )
    why["confidence"] = (
        "measured for larger-side verdicts only; a smaller-side class follows from its children's" if not larger
        else "the feature is never active: there is no verdict to doubt"
    )
    why["hungarian"] = why["hungarian_score"] = (
        f"the one-to-one assignment did not run: {hungarian_skipped}" if hungarian_skipped
        else "not paired by the one-to-one assignment (the other dictionary has fewer features)"
    )
    out = none_reasons(a, why)
    out.update({f"best.{m}": "no score is defined by this metric" for m, b in a.best.items() if b is None})
    return out


def check_output_dir(directory: str | Path) -> Path:
    """Raise FileExistsError unless ``directory`` is new, empty, or earlier alignment tables
    (which :func:`save_tables` replaces). Check before a long alignment, not after."""
    directory = Path(directory)
    if directory.exists() and not _is_alignment_dir(directory):
        if not directory.is_dir() or any(directory.iterdir()):
            raise FileExistsError(
                f"{str(directory)!r} exists and is not an alignment folder (no alignment report.json); "
                "choose a new or empty folder"
            )
    return directory


def _is_alignment_dir(directory: Path) -> bool:
    """Whether ``directory`` holds alignment tables: a report.json that is an AlignmentReport
    (an HTML report folder has a report.json too, which must not be replaced)."""
    try:
        report = json.loads((directory / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"a_fingerprint", "b_fingerprint", "larger_side"} <= report.keys()


def save_tables(
    tables: AlignmentTables, directory: str | Path, *, files: dict[str, Any] | None = None
) -> Path:
    """Write ``report.json`` and the arrays (layout in the module docstring) to ``directory``,
    replacing it whole; the (K_a, K_b) matrices are not saved. Returns the folder.

    The folder is written under a hidden name beside ``directory`` and renamed into place, so a
    reader sees the previous tables or the new ones, never a mix. ``files`` maps extra relative
    paths to a callable ``write(path)`` run inside the new folder before it is published (the CLI
    puts its plots there this way).

    Raises FileExistsError when ``directory`` exists, is not empty and holds no report.json
    (it is not an alignment folder, so it is not replaced).
    """
    directory = check_output_dir(directory)
    tmp = staging_dir(directory)
    try:
        for name, arrays, keys in _groups(tables):
            (tmp / name).mkdir()
            for key in keys:
                np.save(tmp / name / f"{key}.npy", arrays[key], allow_pickle=False)
        (tmp / "report.json").write_text(tables.report.model_dump_json(indent=2))
        _write_features_csv(tables, tmp / FEATURES_CSV)
        if tables.index is not None and tables.index_meta is not None:
            write_index(tmp / INDEX_DIR, tables.index, tables.index_meta)
        for relative, write in (files or {}).items():
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target)
        publish_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def feature_rows(tables: AlignmentTables) -> list[dict[str, Any]]:
    """One dict per feature of both models with the :data:`FEATURE_COLUMNS` (None = empty)."""
    r = tables.report
    rows: list[dict[str, Any]] = []
    for key, model, arrays in (("a", r.a_model, tables.a), ("b", r.b_model, tables.b)):
        n_children = arrays["n_assigned"]
        levels = larger_side_confidence(arrays) if key == r.larger_side else None
        for f in range(len(arrays["count"])):
            parent = int(arrays["parent"][f])
            row: dict[str, Any] = {
                "model": model,
                "feature": f,
                "class": str(arrays["class_label"][f]),
                "parent": parent if parent >= 0 else None,
                "parent_score": float(arrays["parent_score"][f]) if parent >= 0 else None,
                "parent_decoder_cosine": _finite(arrays["parent_decoder_cosine"][f]) if parent >= 0 else None,
                "parent_coactive_correlation": (
                    _finite(arrays["parent_coactive_correlation"][f]) if parent >= 0 else None
                ),
                "parent_coactive_count": int(arrays["parent_coactive_count"][f]) if parent >= 0 else None,
                "nesting": _finite(arrays["nesting"][f]),
                "error_ratio": _finite(arrays["error_ratio"][f]),
                "siblings_inside": _finite(arrays["siblings_inside"][f]),
                "inside_siblings": _finite(arrays["inside_siblings"][f]),
                "parent_proportionality": _finite(arrays["parent_proportionality"][f]),
                "sibling_proportionality": _finite(arrays["sibling_proportionality"][f]),
                "rival": int(arrays["rival"][f]) if arrays["rival"][f] >= 0 else None,
                "rival_score": _finite(arrays["rival_score"][f]),
                "confidence": (levels[f] or None) if levels is not None else None,
                "n_children": int(n_children[f]),
                "count": int(arrays["count"][f]),
            }
            for metric in METRICS:
                index = int(arrays[f"best_{metric}_index"][f])
                name = _SWAPPED.get(metric, metric) if key == "b" else metric  # B's own view
                row[f"best_{name}"] = index if index >= 0 else None
                row[f"best_{name}_score"] = float(arrays[f"best_{metric}_score"][f]) if index >= 0 else None
            rows.append(row)
    return rows


def larger_side_confidence(arrays: dict[str, np.ndarray], feature: int | None = None) -> np.ndarray:
    """``verdicts.confidence`` of the larger side's features (every one, or only ``feature``: a
    query must not pay for the whole dictionary): its parent's correlation when it has one (the
    parent is its best-correlated candidate), else its best."""
    at = slice(None) if feature is None else slice(feature, feature + 1)
    parent = arrays["parent"][at]
    score = np.where(parent >= 0, arrays["parent_score"][at], arrays["best_activation_correlation_score"][at])
    return V.confidence(arrays["class_label"][at], score, arrays["nesting"][at], arrays["rival_score"][at])


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _write_features_csv(tables: AlignmentTables, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(FEATURE_COLUMNS))
        writer.writeheader()
        for row in feature_rows(tables):
            # Empty cells for None; repr-exact floats so the file round-trips to the arrays.
            writer.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v) for k, v in row.items()})


def _groups(tables: AlignmentTables):
    return (
        ("a", tables.a, SIDE_ARRAYS),
        ("b", tables.b, SIDE_ARRAYS),
        ("block", tables.block, BLOCK_ARRAYS),
        ("null", tables.null, NULL_ARRAYS),
    )


def load_tables(directory: str | Path) -> AlignmentTables:
    """Read what :func:`save_tables` wrote (without matrices)."""
    directory = Path(directory)
    path = directory / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"no alignment report at {str(path)!r}; write it with save_tables")
    report = AlignmentReport.model_validate(json.loads(path.read_text()))
    groups = {}
    for name, keys in (
        ("a", SIDE_ARRAYS),
        ("b", SIDE_ARRAYS),
        ("block", BLOCK_ARRAYS),
        ("null", NULL_ARRAYS),
    ):
        arrays = {}
        for key in keys:
            file = directory / name / f"{key}.npy"
            if not file.is_file():
                raise FileNotFoundError(
                    f"alignment table {str(file)!r} is missing: the folder is incomplete or was "
                    "written by an older version of splatnlp-mechinterp; rebuild it with "
                    f"`splatnlp-mechinterp align {report.a_name} {report.b_name} --out {str(directory)}`"
                )
            arrays[key] = np.load(file, allow_pickle=False)
        groups[name] = arrays
    for name, k in (("a", report.n_features_a), ("b", report.n_features_b)):
        for key, arr in groups[name].items():
            if arr.shape != (k,):
                raise ValueError(
                    f"{str(directory / name / key)!r}.npy has shape {arr.shape}; expected ({k},)"
                )
    block = groups["block"]
    expected = (len(block["rows"]), len(block["cols"]))
    if block["values"].shape != expected or block["col_row"].shape != expected[1:]:
        raise ValueError(
            f"heatmap block in {str(directory / 'block')!r} is inconsistent: values {block['values'].shape}, "
            f"col_row {block['col_row'].shape}; expected {expected} and ({expected[1]},)"
        )
    return AlignmentTables(
        report=report, a=groups["a"], b=groups["b"], block=block, null=groups["null"], source=directory
    )
