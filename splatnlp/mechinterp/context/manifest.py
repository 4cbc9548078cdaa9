"""The context manifest ``context.yaml``: what a context holds and where it came from.

A context is a folder::

    context.yaml         the manifest (:class:`ContextManifest`), written last
    sae/                 the SAE in its own format (see :mod:`splatnlp.mechinterp.context.sae`)
    vocab.json           ability tokens {token: id}
    weapon_vocab.json    weapon tokens {token: id}
    examples/            the example set (:mod:`splatnlp.mechinterp.context.examples`)
    codes/               codes (n_examples, n_features), CSR + CSC (:mod:`splatnlp.mechinterp.context.codes`)
    stats/               per-feature statistics (:mod:`splatnlp.mechinterp.context.stats`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from splatnlp.mechinterp.context.formats import SAEFormat

__all__ = [
    "KNOWN_MODEL_TYPES",
    "MANIFEST",
    "SCHEMA_VERSION",
    "ActivationsEntry",
    "CodesEntry",
    "ContextManifest",
    "ContextSummary",
    "ExampleSetEntry",
    "Provenance",
    "SAEEntry",
    "package_version",
    "read_manifest",
]

MANIFEST = "context.yaml"
SCHEMA_VERSION = 2
"""2 added the optional ``activations`` entry; version-1 manifests still load (they have none)."""
KNOWN_MODEL_TYPES = ("full", "ultra")


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


class ActivationsEntry(BaseModel):
    """The hidden activations the codes were encoded from, kept for tests that need the input
    itself (the stitching test of novelty compares an SAE's reconstruction error with and without
    a feature of the other SAE)."""

    model_config = ConfigDict(extra="forbid")
    file: str = "activations.npy"
    """float32 ``.npy`` of shape (n_examples, d_model), relative to the context folder."""
    dtype: Literal["float32"] = "float32"


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
    activations: ActivationsEntry | None = None
    """Present when the context was built from activations and kept them (the default)."""


def package_version() -> str:
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

