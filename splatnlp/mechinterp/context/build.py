"""Build a context folder from an SAE, an example set, and activations or codes.

:func:`build_context` writes into a hidden temporary folder beside the target and renames it into
place only when complete, so an interrupted build never leaves a folder that loads.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import yaml

from splatnlp.mechinterp.context.codes import CodeStore, write_codes
from splatnlp.mechinterp.context.encode import encode_activations, load_activations
from splatnlp.mechinterp.context.examples import ExampleSet
from splatnlp.mechinterp.context.folders import publish_dir, staging_dir
from splatnlp.mechinterp.context.load import DECODER_FILE, MechInterpContext
from splatnlp.mechinterp.context.manifest import (
    KNOWN_MODEL_TYPES,
    MANIFEST,
    ActivationsEntry,
    CodesEntry,
    ContextManifest,
    ExampleSetEntry,
    Provenance,
    SAEEntry,
    package_version,
)
from splatnlp.mechinterp.context.sae import SAE, load_sae, save_sae
from splatnlp.mechinterp.context.stats import compute_feature_stats
from splatnlp.mechinterp.context.vocab import Vocab, as_vocab

__all__ = ["build_context"]


def _as_vocab(value: Vocab | Mapping[str, int] | str | Path | None, what: str) -> Vocab:
    if value is None:
        raise ValueError(f"{what} is required when examples are not an ExampleSet")
    return as_vocab(value, what=what)



def _as_codes(codes: Any, n_examples: int, n_features: int) -> sp.csr_matrix:
    if isinstance(codes, torch.Tensor):
        codes = codes.to_sparse_csr() if codes.is_sparse or codes.layout != torch.strided else codes
        if codes.layout == torch.sparse_csr:
            codes = sp.csr_matrix(
                (codes.values().numpy(), codes.col_indices().numpy(), codes.crow_indices().numpy()),
                shape=tuple(codes.shape),
            )
        else:
            codes = codes.numpy()
    if isinstance(codes, (str, Path)):
        path = Path(codes)
        if not path.is_file():
            raise FileNotFoundError(f"codes file {str(path)!r} does not exist")
        if path.suffix == ".npz":
            try:
                codes = sp.load_npz(path)
            except (ValueError, OSError) as exc:
                raise ValueError(f"codes file {str(path)!r} is not a scipy sparse .npz: {exc}") from exc
        elif path.suffix == ".npy":
            try:
                codes = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise ValueError(f"codes file {str(path)!r} is not a readable .npy: {exc}") from exc
        else:
            raise ValueError(f"codes file {str(path)!r} has suffix {path.suffix!r}; expected .npy or .npz")
    if sp.issparse(codes):
        mat = sp.csr_matrix(codes, dtype=np.float32)
        values = mat.data
    else:
        arr = np.asarray(codes)
        if arr.ndim != 2:
            raise ValueError(f"codes must be 2-D (n_examples, n_features), got shape {arr.shape}")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"codes must be numeric, got dtype {arr.dtype}")
        mat = sp.csr_matrix(arr.astype(np.float32, copy=False))
        values = mat.data
    if mat.shape != (n_examples, n_features):
        raise ValueError(
            f"codes have shape {mat.shape}; expected (n_examples={n_examples}, "
            f"n_features={n_features}) to match the examples and the SAE"
        )
    if not np.isfinite(values).all():
        raise ValueError("codes contain NaN or inf values")
    if len(values) and values.min() < 0:
        raise ValueError(
            f"codes contain negative values (min {values.min():.4g}); SAE codes are expected to be "
            "non-negative (ReLU, JumpReLU or top-k activations)"
        )
    return mat


def _write_activations(path: Path, acts: np.ndarray | torch.Tensor, *, chunk_size: int) -> None:
    """Copy activations (n_examples, d_model) into a float32 ``.npy`` chunk by chunk, so a
    memory-mapped input is never read whole."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=tuple(acts.shape))
    for start in range(0, acts.shape[0], chunk_size):
        chunk = acts[start : start + chunk_size]
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.detach().to("cpu", torch.float32).numpy()
        out[start : start + chunk_size] = chunk
    out.flush()
    del out


def build_context(
    out_dir: str | Path,
    *,
    sae: SAE | str | Path,
    examples: ExampleSet | Iterable[Mapping[str, Any]],
    vocab: Vocab | Mapping[str, int] | str | Path | None = None,
    weapon_vocab: Vocab | Mapping[str, int] | str | Path | None = None,
    activations: Any = None,
    codes: Any = None,
    name: str | None = None,
    model_type: str | None = None,
    activations_key: str | None = None,
    device: str = "cpu",
    chunk_size: int = 2048,
    n_top_examples: int = 100,
    source: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    keep_activations: bool = True,
    progress: bool = True,
) -> MechInterpContext:
    """Build a context folder from an SAE, an example set, and activations or codes.

    Parameters
    ----------
    out_dir : the context folder to create (its name is the default context name)
    sae : an :class:`SAE` or a path :func:`load_sae` accepts
    examples : an :class:`ExampleSet`, or records with token strings: ``{"id", "weapon",
        "abilities"}`` (SplatNLP builds; ``vocab`` and ``weapon_vocab`` required) or ``{"id",
        "tokens"}`` (generic token data, no weapon; ``vocab`` required)
    vocab, weapon_vocab : ``{token: id}`` mappings, :class:`Vocab` objects or JSON paths
    activations : hidden states of shape (n_examples, d_model): array, tensor, ``.npy`` or
        ``.safetensors`` path; encoded through ``sae`` in chunks of ``chunk_size`` on ``device``
    codes : precomputed codes of shape (n_examples, n_features): dense array or tensor, scipy
        sparse matrix, or a ``.npy``/``.npz`` path. Exactly one of ``activations`` and ``codes``.
    model_type : ``"full"``/``"ultra"``; defaults to the folder name if it is one of those
    provenance : extra fields recorded in the manifest's provenance
    keep_activations : when built from ``activations``, store them (float32, memory-mapped as
        :attr:`MechInterpContext.activations`; n_examples x d_model x 4 bytes) for the tests that
        need the input itself, such as the stitching test of novelty

    Returns the loaded :class:`MechInterpContext`.
    """
    out_dir = Path(out_dir)
    name = name or out_dir.name
    if model_type is None:
        model_type = name if name in KNOWN_MODEL_TYPES else "custom"
    if (activations is None) == (codes is None):
        raise ValueError("pass exactly one of activations= or codes=")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{str(out_dir)!r} already exists; pass overwrite=True to replace it")
    if n_top_examples < 1:
        raise ValueError(f"n_top_examples must be >= 1, got {n_top_examples}")
    if not isinstance(sae, SAE):
        sae = load_sae(sae)
    if not isinstance(examples, ExampleSet):
        # weapon_vocab may be None for generic {"id", "tokens"} records; from_records says so
        # when builds need it.
        examples = ExampleSet.from_records(
            examples,
            vocab=_as_vocab(vocab, "vocab"),
            weapon_vocab=None if weapon_vocab is None else _as_vocab(weapon_vocab, "weapon_vocab"),
        )
    else:
        for given, own, what in ((vocab, examples.vocab, "vocab"), (weapon_vocab, examples.weapon_vocab, "weapon_vocab")):
            if given is not None and _as_vocab(given, what) != own:
                raise ValueError(f"{what} differs from the ExampleSet's own {what}")

    fvu, n_fvu = None, None
    if activations is not None:
        acts = load_activations(activations, activations_key)
        if acts.ndim != 2 or acts.shape[0] != len(examples):
            raise ValueError(
                f"activations have shape {tuple(acts.shape)}; expected ({len(examples)}, "
                f"{sae.d_model}) = (n_examples, d_model)"
            )
        matrix, fvu, n_fvu = encode_activations(
            sae, acts, chunk_size=chunk_size, device=device, progress=progress
        )
    else:
        matrix = _as_codes(codes, len(examples), sae.n_features)

    tmp = staging_dir(out_dir)
    try:
        (tmp / "sae").mkdir()
        sae_path = save_sae(sae, tmp / "sae")
        # The decoder rows beside the SAE, as .npy: the matcher's decoder cosines read them
        # memory-mapped, so a query needs neither torch nor the checkpoint.
        np.save(tmp / DECODER_FILE, sae.W_dec.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
        examples.vocab.to_json(tmp / "vocab.json")
        examples.weapon_vocab.to_json(tmp / "weapon_vocab.json")
        examples.save(tmp / "examples")
        summary = write_codes(tmp / "codes", matrix)
        kept = None
        if activations is not None and keep_activations:
            kept = ActivationsEntry()
            _write_activations(tmp / kept.file, acts, chunk_size=max(chunk_size, 4096))
        store = CodeStore(tmp / "codes", matrix.shape)
        del matrix
        stats = compute_feature_stats(store.csc, examples.token_matrix(), n_top_examples=n_top_examples)
        stats.save(tmp / "stats")
        prov = Provenance(
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            created_by=package_version(),
            codes_from="activations" if activations is not None else "codes",
            source=source,
            reconstruction_fvu=fvu,
            fvu_examples=n_fvu,
            **dict(provenance or {}),
        )
        manifest = ContextManifest(
            name=name,
            model_type=model_type,
            n_features=sae.n_features,
            d_model=sae.d_model,
            sae=SAEEntry(path=str(Path(sae_path).relative_to(tmp)), format=sae.format),
            example_set=ExampleSetEntry(fingerprint=examples.fingerprint, n_examples=len(examples)),
            codes=CodesEntry(nnz=summary["nnz"], mean_active_per_example=summary["mean_active_per_example"]),
            n_top_examples=n_top_examples,
            provenance=prov,
            activations=kept,
        )
        # The manifest is written last: a folder without it is never taken for a context.
        (tmp / MANIFEST).write_text(yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False))
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MechInterpContext(out_dir)
