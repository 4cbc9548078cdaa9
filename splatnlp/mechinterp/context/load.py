"""Open a context: :class:`MechInterpContext` and name resolution (:func:`load_context`).

Opening reads the manifest only; vocabularies, examples, statistics and the SAE load on first use,
and codes are memory-mapped, so a context opens in milliseconds whatever its size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splatnlp.mechinterp.context import config as cfg
from splatnlp.mechinterp.context.codes import CodeStore
from splatnlp.mechinterp.context.examples import ExampleSet, load_npy
from splatnlp.mechinterp.context.manifest import MANIFEST, ContextSummary, read_manifest
from splatnlp.mechinterp.context.stats import FeatureStats
from splatnlp.mechinterp.context.vocab import Vocab

if TYPE_CHECKING:  # the SAE (and torch behind it) loads on first use of ``ctx.sae`` only
    from splatnlp.mechinterp.context.sae import SAE

__all__ = ["DEMO_HINT", "MechInterpContext", "list_contexts", "load_context", "resolve_context"]

DECODER_FILE = "decoder.npy"
"""The SAE's decoder rows as stored, float32 (n_features, d_model), written by ``build_context``
(contexts built before it have none and read the SAE instead)."""

DEMO_HINT = "build the demo contexts with `splatnlp-mechinterp demo` (or `make demo`)"


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

    @property
    def has_activations(self) -> bool:
        """Whether the hidden activations were kept (contexts built from codes have none)."""
        return self.manifest.activations is not None

    @cached_property
    def activations(self) -> np.ndarray:
        """The hidden activations, memory-mapped float32 of shape (n_examples, d_model).

        Raises ``LookupError`` naming the reason when the context has none: it was built from
        precomputed codes, or with ``keep_activations=False``.
        """
        entry = self.manifest.activations
        if entry is None:
            how = (
                "it was built from precomputed codes"
                if self.manifest.provenance.codes_from == "codes"
                else "it was built with keep_activations=False (--no-activations)"
            )
            raise LookupError(
                f"context {self.name!r} ({str(self.path)!r}) has no activations: {how}. Rebuild it "
                "from the hidden activations to run tests that need them."
            )
        array = load_npy(self.path / entry.file, mmap=True)
        if array.shape != (self.n_examples, self.d_model) or array.dtype != np.float32:
            raise ValueError(
                f"context {str(self.path)!r}: {entry.file} holds {array.dtype} {array.shape}; "
                f"expected float32 ({self.n_examples}, {self.d_model})"
            )
        return array

    @cached_property
    def sae(self) -> SAE:
        from splatnlp.mechinterp.context.sae import load_sae

        return load_sae(self.path / self.manifest.sae.path, format=self.manifest.sae.format)

    @cached_property
    def decoder_weights(self) -> np.ndarray:
        """The SAE's decoder rows as stored (not normalized), float32 of shape (n_features,
        d_model): memory-mapped from ``decoder.npy`` when the context has it (no torch needed),
        else read from the SAE."""
        path = self.path / DECODER_FILE
        if not path.is_file():
            return self.sae.W_dec.detach().cpu().numpy()
        array = load_npy(path, mmap=True)
        if array.shape != (self.n_features, self.d_model) or array.dtype != np.float32:
            raise ValueError(
                f"context {str(self.path)!r}: {DECODER_FILE} holds {array.dtype} {array.shape}; "
                f"expected float32 ({self.n_features}, {self.d_model})"
            )
        return array

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
