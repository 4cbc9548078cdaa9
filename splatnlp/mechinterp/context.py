"""SAE contexts: an SAE plus its codes on a shared example set, built once and memory-mapped.

A context is a folder::

    context.yaml         the manifest (:class:`ContextManifest`), written last
    sae/                 the SAE in its own format (see :mod:`splatnlp.mechinterp.sae`)
    vocab.json           ability tokens {token: id}
    weapon_vocab.json    weapon tokens {token: id}
    examples/            the example set (:mod:`splatnlp.mechinterp.examples`)
    codes/               codes (n_examples, n_features), CSR + CSC (:mod:`splatnlp.mechinterp.codes`)
    stats/               per-feature statistics (:mod:`splatnlp.mechinterp.stats`)

:func:`build_context` writes into a hidden temporary folder beside the target and renames it into
place only when complete, so an interrupted build never leaves a folder that loads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from splatnlp.mechinterp import config as cfg
from splatnlp.mechinterp.codes import CodeStore, write_codes
from splatnlp.mechinterp.examples import ExampleSet
from splatnlp.mechinterp.folders import publish_dir, staging_dir
from splatnlp.mechinterp.sae import SAE, SAEFormat, load_sae, save_sae
from splatnlp.mechinterp.stats import FeatureStats, compute_feature_stats
from splatnlp.mechinterp.vocab import Vocab, as_vocab

MANIFEST = "context.yaml"
SCHEMA_VERSION = 1
KNOWN_MODEL_TYPES = ("full", "ultra")
DEMO_HINT = "build the demo contexts with `splatnlp-mechinterp demo` (or `make demo`)"


class SAEEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    """Path of the SAE file or folder, relative to the context folder."""
    format: SAEFormat


class ExampleSetEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fingerprint: str
    """``sha256:...`` of the example set; two contexts are comparable iff these are equal."""
    n_examples: int


class CodesEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nnz: int
    mean_active_per_example: float
    dtype: Literal["float32"] = "float32"
    orientations: list[Literal["csr", "csc"]] = ["csr", "csc"]


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")
    created_at: str
    created_by: str
    codes_from: Literal["activations", "codes"]
    """Whether codes were encoded here from hidden activations or supplied precomputed."""
    source: str | None = None
    """Free text: where the SAE and the data came from."""
    reconstruction_fvu: float | None = None
    """Fraction of variance unexplained by the SAE on (a sample of) the activations; None
    when the context was built from precomputed codes."""
    fvu_examples: int | None = None


class ContextManifest(BaseModel):
    """``context.yaml``: what a context holds and where it came from."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    name: str
    model_type: str
    """``full`` or ``ultra`` for the SplatNLP SAEs; any other label for other models."""
    n_features: int = Field(gt=0)
    d_model: int = Field(gt=0)
    sae: SAEEntry
    vocab_file: str = "vocab.json"
    weapon_vocab_file: str = "weapon_vocab.json"
    example_set: ExampleSetEntry
    codes: CodesEntry
    n_top_examples: int
    provenance: Provenance


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return f"splatnlp-mechinterp {version('splatnlp-mechinterp')}"
    except Exception:  # noqa: BLE001 - running from a source tree without an install
        return "splatnlp-mechinterp (source tree)"


def read_manifest(path: str | Path) -> ContextManifest:
    """Read and validate a ``context.yaml`` (a file or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"missing context manifest {str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"context manifest {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"context manifest {str(path)!r} is not a YAML mapping")
    version = raw.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"context manifest {str(path)!r} has schema_version {version!r}; this version of "
            f"splatnlp-mechinterp reads schema_version <= {SCHEMA_VERSION}. Upgrade the package "
            "or rebuild the context."
        )
    try:
        return ContextManifest.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"context manifest {str(path)!r} is invalid: {exc}") from exc


class ContextSummary(BaseModel):
    """What ``context show`` prints: the manifest plus figures read from the stored files."""

    name: str
    path: str
    model_type: str
    n_features: int
    d_model: int
    n_examples: int
    fingerprint: str
    sae_format: str
    mean_active_per_example: float
    """Average number of features with a non-zero code per example (L0)."""
    n_dead_features: int
    """Features never active on the example set."""
    reconstruction_fvu: float | None
    """Fraction of variance of the activations the SAE leaves unexplained (None when the context
    was built from precomputed codes)."""
    size_bytes: int
    provenance: Provenance

    def to_text(self) -> str:
        fvu = "n/a (built from codes)" if self.reconstruction_fvu is None else f"{self.reconstruction_fvu:.3f}"
        return "\n".join(
            [
                f"context {self.name!r} ({self.model_type}) at {self.path}",
                f"  features        {self.n_features} (d_model {self.d_model}, SAE format {self.sae_format})",
                f"  examples        {self.n_examples}  fingerprint {self.fingerprint[:23]}...",
                f"  active/example  {self.mean_active_per_example:.1f}",
                f"  dead features   {self.n_dead_features}",
                f"  recon. FVU      {fvu}",
                f"  size on disk    {self.size_bytes / 2**20:.1f} MiB",
                f"  created         {self.provenance.created_at} by {self.provenance.created_by}",
            ]
        )


class MechInterpContext:
    """A loaded context. Cheap to open: vocabularies, examples, codes and statistics load on
    first use, and codes are memory-mapped.

    Attributes
    ----------
    name, path, manifest, model_type, n_features, d_model, n_examples, fingerprint
    vocab, weapon_vocab : :class:`Vocab`
    examples : :class:`ExampleSet`
    codes : :class:`CodeStore` of shape (n_examples, n_features)
    stats : :class:`FeatureStats`
    sae : :class:`SAE`
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        for rel in (self.manifest.vocab_file, self.manifest.weapon_vocab_file):
            if not (self.path / rel).is_file():
                raise FileNotFoundError(f"context {str(self.path)!r} is missing {rel!r}")
        if not self.codes.has_files():
            raise FileNotFoundError(
                f"context {str(self.path)!r} has no codes (expected codes/csr_*.npy and "
                "codes/csc_*.npy); rebuild it with build_context"
            )

    def __repr__(self) -> str:
        return (
            f"MechInterpContext(name={self.name!r}, model_type={self.model_type!r}, "
            f"n_features={self.n_features}, n_examples={self.n_examples}, path={str(self.path)!r})"
        )

    # -- manifest fields ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def model_type(self) -> str:
        return self.manifest.model_type

    @property
    def n_features(self) -> int:
        return self.manifest.n_features

    @property
    def d_model(self) -> int:
        return self.manifest.d_model

    @property
    def n_examples(self) -> int:
        return self.manifest.example_set.n_examples

    @property
    def fingerprint(self) -> str:
        """The example-set fingerprint; contexts are comparable iff theirs are equal."""
        return self.manifest.example_set.fingerprint

    # -- lazily loaded parts -----------------------------------------------------------------
    @cached_property
    def vocab(self) -> Vocab:
        return Vocab.from_json(self.path / self.manifest.vocab_file)

    @cached_property
    def weapon_vocab(self) -> Vocab:
        return Vocab.from_json(self.path / self.manifest.weapon_vocab_file)

    @cached_property
    def examples(self) -> ExampleSet:
        examples = ExampleSet.load(
            self.path / "examples", vocab=self.vocab, weapon_vocab=self.weapon_vocab
        )
        if len(examples) != self.n_examples:
            raise ValueError(
                f"context {str(self.path)!r}: examples/ holds {len(examples)} examples, the "
                f"manifest says {self.n_examples}"
            )
        return examples

    @cached_property
    def codes(self) -> CodeStore:
        return CodeStore(self.path / "codes", (self.n_examples, self.n_features))

    @cached_property
    def stats(self) -> FeatureStats:
        n_tokens = len(self.vocab) + len(self.weapon_vocab)
        return FeatureStats.load(self.path / "stats", n_features=self.n_features, n_tokens=n_tokens)

    @cached_property
    def sae(self) -> SAE:
        return load_sae(self.path / self.manifest.sae.path, format=self.manifest.sae.format)

    @cached_property
    def token_names(self) -> list[str]:
        """Names of the combined token space used by :attr:`stats` (abilities, then weapons)."""
        return self.vocab.tokens + self.weapon_vocab.tokens

    # -- helpers -----------------------------------------------------------------------------
    def check_feature(self, feature: Any) -> int:
        """``feature`` as an int, or an error naming the valid range."""
        if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)):
            raise TypeError(
                f"feature id must be an integer, got {feature!r} ({type(feature).__name__})"
            )
        if not 0 <= int(feature) < self.n_features:
            raise ValueError(
                f"feature {int(feature)} is out of range for {self.name!r} "
                f"(0..{self.n_features - 1})"
            )
        return int(feature)

    def summary(self) -> ContextSummary:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return ContextSummary(
            name=self.name,
            path=str(self.path),
            model_type=self.model_type,
            n_features=self.n_features,
            d_model=self.d_model,
            n_examples=self.n_examples,
            fingerprint=self.fingerprint,
            sae_format=self.manifest.sae.format,
            mean_active_per_example=self.manifest.codes.mean_active_per_example,
            n_dead_features=int((self.stats.frequency == 0).sum()),
            reconstruction_fvu=self.manifest.provenance.reconstruction_fvu,
            size_bytes=size,
            provenance=self.manifest.provenance,
        )

    def verify(self) -> None:
        """Full consistency check: recompute the example fingerprint and read every index."""
        if self.examples.fingerprint != self.fingerprint:
            raise ValueError(
                f"context {str(self.path)!r}: examples/ has fingerprint "
                f"{self.examples.fingerprint}, the manifest says {self.fingerprint}"
            )
        for mat in (self.codes.csr, self.codes.csc):
            mat.check_format(full_check=True)
        if self.sae.n_features != self.n_features or self.sae.d_model != self.d_model:
            raise ValueError(
                f"context {str(self.path)!r}: the SAE has shape ({self.sae.d_model} -> "
                f"{self.sae.n_features}), the manifest says ({self.d_model} -> {self.n_features})"
            )


# -- resolving names ---------------------------------------------------------------------------
def _search_dirs(contexts_dir: str | Path | None) -> list[tuple[str, Path]]:
    """Folders of contexts in resolution order, each with a label saying where it came from."""
    dirs: list[tuple[str, Path]] = []
    if contexts_dir is not None:
        dirs.append(("contexts_dir argument", Path(contexts_dir).expanduser()))
    env = os.environ.get(cfg.ENV_CONTEXTS_DIR)
    if env:
        dirs.append((f"${cfg.ENV_CONTEXTS_DIR}", Path(env).expanduser()))
    return dirs


def _is_context(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _candidates(contexts_dir: str | Path | None) -> Iterator[tuple[str, str, Path]]:
    """Every known context as (name, where-from, path), in resolution order."""
    for label, folder in _search_dirs(contexts_dir):
        if folder.is_dir():
            for sub in sorted(folder.iterdir()):
                if _is_context(sub):
                    yield sub.name, label, sub
    config = cfg.load_config()
    for name, path in config.contexts.items():
        yield name, f"config {str(cfg.config_path())!r}", path
    if config.contexts_dir is not None and config.contexts_dir.is_dir():
        for sub in sorted(config.contexts_dir.iterdir()):
            if _is_context(sub):
                yield sub.name, f"config {str(cfg.config_path())!r}", sub
    demo = cfg.demo_dir(config.demo_preset)
    if demo.is_dir():
        for sub in sorted(demo.iterdir()):
            if _is_context(sub):
                yield sub.name, f"demo preset {config.demo_preset!r}", sub


def resolve_context(name_or_path: str | Path, *, contexts_dir: str | Path | None = None) -> Path:
    """The folder a context name or path refers to.

    Order: an explicit path (anything that is an existing folder with ``context.yaml``, or
    contains a path separator), ``contexts_dir``, ``$SPLATNLP_CONTEXTS_DIR``, the config file
    (``contexts`` then ``contexts_dir``), then the built demo contexts.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or os.sep in text or text.startswith(".")
    if looks_like_path or _is_context(path):
        if _is_context(path):
            return path
        raise FileNotFoundError(
            f"{text!r} is not a context folder (no {MANIFEST} in it)"
            if path.exists()
            else f"context path {text!r} does not exist"
        )
    known: dict[str, str] = {}
    for name, label, candidate in _candidates(contexts_dir):
        if name == text:
            if not _is_context(candidate):
                raise FileNotFoundError(
                    f"context {text!r} from {label} points to {str(candidate)!r}, which has no "
                    f"{MANIFEST}"
                )
            return candidate
        known.setdefault(name, label)
    listing = ", ".join(f"{n!r} ({where})" for n, where in sorted(known.items())) or "none"
    raise KeyError(
        f"no context named {text!r}; known: {listing}. To get the 'full' and 'ultra' demo "
        f"contexts, {DEMO_HINT}; to use your own, pass a path, set ${cfg.ENV_CONTEXTS_DIR}, or "
        f"list it in {str(cfg.config_path())!r}."
    )


def load_context(
    name_or_path: str | Path = "ultra", *, contexts_dir: str | Path | None = None
) -> MechInterpContext:
    """Load a context by name (``"ultra"``, ``"full"``, ...) or by folder path.

    See :func:`resolve_context` for the resolution order. Loading reads the manifest only;
    codes are memory-mapped on first use.
    """
    return MechInterpContext(resolve_context(name_or_path, contexts_dir=contexts_dir))


def list_contexts(*, contexts_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every context that a name would resolve to (first one wins), with its manifest summary."""
    seen: set[str] = set()
    out = []
    for name, label, path in _candidates(contexts_dir):
        if name in seen:
            continue
        seen.add(name)
        entry: dict[str, Any] = {"name": name, "source": label, "path": str(path)}
        try:
            m = read_manifest(path)
            entry.update(
                model_type=m.model_type,
                n_features=m.n_features,
                n_examples=m.example_set.n_examples,
                fingerprint=m.example_set.fingerprint,
            )
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


# -- building ----------------------------------------------------------------------------------
def _as_vocab(value: Vocab | Mapping[str, int] | str | Path | None, what: str) -> Vocab:
    if value is None:
        raise ValueError(f"{what} is required when examples are not an ExampleSet")
    return as_vocab(value, what=what)


def _load_activations(activations: Any, key: str | None) -> np.ndarray | torch.Tensor:
    """Activations as an array-like of shape (n_examples, d_model) without reading a .npy fully."""
    if isinstance(activations, (str, Path)):
        path = Path(activations)
        if not path.is_file():
            raise FileNotFoundError(f"activations file {str(path)!r} does not exist")
        if path.suffix == ".npy":
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise ValueError(f"activations file {str(path)!r} is not a readable .npy: {exc}") from exc
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise ValueError(f"activations file {str(path)!r} is not readable safetensors: {exc}") from exc
            if key is None:
                if len(tensors) != 1:
                    raise ValueError(
                        f"activations file {str(path)!r} holds tensors {sorted(tensors)}; pass "
                        "activations_key to choose one"
                    )
                key = next(iter(tensors))
            if key not in tensors:
                raise ValueError(f"activations file {str(path)!r} has no tensor {key!r}; found {sorted(tensors)}")
            return tensors[key]
        raise ValueError(
            f"activations file {str(path)!r} has suffix {path.suffix!r}; expected .npy or .safetensors"
        )
    if isinstance(activations, (np.ndarray, torch.Tensor)):
        return activations
    raise TypeError(
        f"activations must be a path, numpy array or torch tensor, got {type(activations).__name__}"
    )


def encode_activations(
    sae: SAE,
    activations: np.ndarray | torch.Tensor,
    *,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
    progress: bool = True,
    fvu_examples: int = 16384,
) -> tuple[sp.csr_matrix, float, int]:
    """Encode activations (n_examples, d_model) through ``sae`` chunk by chunk.

    Returns the codes as CSR (n_examples, n_features), the reconstruction FVU on the first
    ``fvu_examples`` examples, and how many examples that FVU used.
    """
    from tqdm.auto import tqdm

    if activations.ndim != 2:
        raise ValueError(f"activations must be 2-D (n_examples, d_model), got shape {tuple(activations.shape)}")
    n, d = activations.shape
    if d != sae.d_model:
        raise ValueError(f"activations have d_model {d}, but the SAE expects {sae.d_model}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    device = torch.device(device)
    model = sae.to(device)
    indptr_parts, index_parts, value_parts = [np.zeros(1, dtype=np.int64)], [], []
    nnz = 0
    sq_err = 0.0
    x_sum = torch.zeros(d, dtype=torch.float64)
    x_sq = 0.0
    n_fvu = min(n, fvu_examples)
    with torch.inference_mode(), tqdm(
        total=n, desc="encoding", unit="ex", disable=not progress, leave=False
    ) as bar:
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            chunk = activations[start:stop]
            # np.array copies the chunk: a slice of a read-only memory map would make torch warn.
            x = torch.as_tensor(np.array(chunk) if not isinstance(chunk, torch.Tensor) else chunk)
            x = x.to(device=device, dtype=torch.float32)
            if not torch.isfinite(x).all():
                bad = (~torch.isfinite(x)).nonzero()[0]
                row, col = int(bad[0]) + start, int(bad[1])
                raise ValueError(
                    f"activations contain a non-finite value ({float(x[row - start, col])}) at "
                    f"example row {row}, dim {col}"
                )
            codes = model.encode(x)
            if start < n_fvu:
                m = min(stop, n_fvu) - start
                recon = model.decode(codes[:m])
                sq_err += float(((x[:m] - recon) ** 2).sum())
                x_sum += x[:m].sum(0).double().cpu()
                x_sq += float((x[:m].double() ** 2).sum())
            csr = sp.csr_matrix(codes.cpu().numpy())
            indptr_parts.append(csr.indptr[1:].astype(np.int64) + nnz)
            index_parts.append(csr.indices.astype(np.int32))
            value_parts.append(csr.data.astype(np.float32))
            nnz += csr.nnz
            bar.update(stop - start)
    total_var = x_sq - float((x_sum**2).sum()) / max(n_fvu, 1)
    fvu = sq_err / total_var if total_var > 0 else float("nan")
    result = sp.csr_matrix(
        (
            np.concatenate(value_parts) if value_parts else np.zeros(0, np.float32),
            np.concatenate(index_parts) if index_parts else np.zeros(0, np.int32),
            np.concatenate(indptr_parts),
        ),
        shape=(n, sae.n_features),
    )
    return result, fvu, n_fvu


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
    progress: bool = True,
) -> MechInterpContext:
    """Build a context folder from an SAE, an example set, and activations or codes.

    Parameters
    ----------
    out_dir : the context folder to create (its name is the default context name)
    sae : an :class:`SAE` or a path :func:`load_sae` accepts
    examples : an :class:`ExampleSet`, or records ``{"id", "weapon", "abilities"}`` with token
        strings (then ``vocab`` and ``weapon_vocab`` are required)
    vocab, weapon_vocab : ``{token: id}`` mappings, :class:`Vocab` objects or JSON paths
    activations : hidden states of shape (n_examples, d_model): array, tensor, ``.npy`` or
        ``.safetensors`` path; encoded through ``sae`` in chunks of ``chunk_size`` on ``device``
    codes : precomputed codes of shape (n_examples, n_features): dense array or tensor, scipy
        sparse matrix, or a ``.npy``/``.npz`` path. Exactly one of ``activations`` and ``codes``.
    model_type : ``"full"``/``"ultra"``; defaults to the folder name if it is one of those
    provenance : extra fields recorded in the manifest's provenance

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
        examples = ExampleSet.from_records(
            examples, vocab=_as_vocab(vocab, "vocab"), weapon_vocab=_as_vocab(weapon_vocab, "weapon_vocab")
        )
    else:
        for given, own, what in ((vocab, examples.vocab, "vocab"), (weapon_vocab, examples.weapon_vocab, "weapon_vocab")):
            if given is not None and _as_vocab(given, what) != own:
                raise ValueError(f"{what} differs from the ExampleSet's own {what}")

    fvu, n_fvu = None, None
    if activations is not None:
        acts = _load_activations(activations, activations_key)
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
        examples.vocab.to_json(tmp / "vocab.json")
        examples.weapon_vocab.to_json(tmp / "weapon_vocab.json")
        examples.save(tmp / "examples")
        summary = write_codes(tmp / "codes", matrix)
        store = CodeStore(tmp / "codes", matrix.shape)
        del matrix
        stats = compute_feature_stats(store.csc, examples.token_matrix(), n_top_examples=n_top_examples)
        stats.save(tmp / "stats")
        prov = Provenance(
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            created_by=_package_version(),
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
        )
        # The manifest is written last: a folder without it is never taken for a context.
        (tmp / MANIFEST).write_text(yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False))
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MechInterpContext(out_dir)
