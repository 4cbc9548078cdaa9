"""Names of the SAE formats and conventions a context can hold, without importing torch.

The manifest and the CLI validate against these; :mod:`splatnlp.mechinterp.context.sae` (which
needs torch) re-exports them.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ACTIVATIONS", "NORMALIZATIONS", "SAE_FORMATS", "Activation", "Normalization", "SAEFormat"]

SAEFormat = Literal["splatnlp", "saelens", "sparsify"]
Activation = Literal["relu", "jumprelu", "topk"]
Normalization = Literal["none", "constant_scalar_rescale", "constant_norm_rescale", "layer_norm"]

SAE_FORMATS: tuple[str, ...] = get_args(SAEFormat)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
