"""Contexts: an SAE plus its codes on a shared example set, built once and memory-mapped.

Modules follow the data: ``sae`` (SAE formats), ``vocab``, ``examples``, ``encode``
(activations -> codes), ``codes`` (CSR/CSC store), ``stats`` (per-feature statistics),
``manifest`` (``context.yaml``), ``build`` (:func:`build_context`), ``load``
(:class:`MechInterpContext`, :func:`load_context`), ``config`` (where contexts and data live),
``folders`` (atomic folder writes) and ``importers/`` (other tools' dumps).

Names load on first use (PEP 562): importing a light submodule such as ``config`` or
``folders`` (the research store and the alignment tables do) must not import torch through
``build``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splatnlp.mechinterp._lazy import lazy_exports

_EXPORTS = {
    "build_context": "build",
    "encode_activations": "encode",
    "DEMO_HINT": "load",
    "MechInterpContext": "load",
    "list_contexts": "load",
    "load_context": "load",
    "resolve_context": "load",
    "ContextManifest": "manifest",
    "ContextSummary": "manifest",
    "read_manifest": "manifest",
}

__all__ = [
    "DEMO_HINT",
    "ContextManifest",
    "ContextSummary",
    "MechInterpContext",
    "build_context",
    "encode_activations",
    "list_contexts",
    "load_context",
    "read_manifest",
    "resolve_context",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from splatnlp.mechinterp.context.build import build_context
    from splatnlp.mechinterp.context.encode import encode_activations
    from splatnlp.mechinterp.context.load import (
        DEMO_HINT,
        MechInterpContext,
        list_contexts,
        load_context,
        resolve_context,
    )
    from splatnlp.mechinterp.context.manifest import ContextManifest, ContextSummary, read_manifest
