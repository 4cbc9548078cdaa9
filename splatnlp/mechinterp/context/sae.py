"""Sparse autoencoders on disk: load, save and encode three formats in one orientation.

Supported layouts (``detect_sae_format`` tells them apart)::

    splatnlp  a torch state dict file (*.pt / *.pth), or a folder holding exactly one
              keys encoder.weight (H, D), encoder.bias (H,), decoder.weight (D, H),
              decoder_bias (D,), optional usage_ema (H,); the dict may be wrapped under
              "state_dict" or "model_state_dict"
    saelens   a folder with cfg.json + sae_weights.safetensors
              keys W_enc (d_in, d_sae), b_enc (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,),
              threshold (d_sae,) for architecture "jumprelu" (log_threshold in old training
              checkpoints), topk_threshold () for BatchTopK training checkpoints, optional
              scaling_factor (d_sae,) from SAELens <= 5 fine-tuning
    sparsify  a folder with cfg.json + sae.safetensors (EleutherAI/sparsify)
              keys encoder.weight (L, d_in), encoder.bias (L,), W_dec (L, d_in), b_dec (d_in,)

Whatever the layout, a loaded ``SAE`` holds ``W_enc`` (d_model, n_features) and ``W_dec``
(n_features, d_model) as float32 on the CPU. Matrices are oriented by ``d_model`` rather than
by the documented layout, because checkpoints exported by hand are often transposed.

Every SAELens cfg.json key is either honoured (it changes the codes or the reconstruction, or
is checked against the weights), ignored because it cannot change them (provenance, placement,
training-only settings: ``_SAELENS_IGNORED_KEYS``), or refused with an
``UnsupportedSAEConfigError`` naming the key, its value and what is supported.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from splatnlp.mechinterp.context.formats import (  # noqa: E402  (re-exported: public names)
    ACTIVATIONS,
    NORMALIZATIONS,
    SAE_FORMATS,
    Activation,
    Normalization,
    SAEFormat,
)

# SAELens's layer_norm divides the centred row by (std + 1e-5) (SAE._setup_activation_normalization).
LAYER_NORM_EPS = 1e-5


class UnsupportedSAEConfigError(ValueError, NotImplementedError):
    """An SAE config asks for something this loader does not implement.

    A ``ValueError`` (the config is bad input for this loader) and, for callers written
    against earlier versions, a ``NotImplementedError``.
    """


# SplatNLP's SAE clamps its codes to [0, 6] (ReLU6-style) during training and inference.
SPLATNLP_CLAMP_MAX = 6.0

# What a SplatNLP checkpoint always means; the file stores weights only.
_SPLATNLP: dict[str, Any] = {
    "format": "splatnlp",
    "activation": "relu",
    "apply_b_dec_to_input": True,
    "clamp_max": SPLATNLP_CLAMP_MAX,
    "normalize_decoder": True,
}
_SPLATNLP_SUFFIXES = (".pt", ".pth")
_SAELENS_WEIGHTS = "sae_weights.safetensors"
_SPARSIFY_WEIGHTS = "sae.safetensors"
_CFG = "cfg.json"
_LAYOUTS = (
    "a *.pt/*.pth file (splatnlp), or a folder holding sae_weights.safetensors (saelens), "
    "sae.safetensors (sparsify) or exactly one *.pt/*.pth file (splatnlp)"
)


@dataclass(eq=False, repr=False)
class SAE:
    """A loaded sparse autoencoder in one canonical orientation.

    Codes are ``act(pre)`` with ``pre = (n(x) - b_dec) @ W_enc + b_enc`` (``n(x) @ W_enc +
    b_enc`` when ``apply_b_dec_to_input`` is False), multiplied by the decoder row norms when
    ``rescale_acts_by_decoder_norm`` is set, where ``n`` is the ``normalize_activations`` step
    (identity by default) and ``act`` is ``relu``, ``jumprelu``
    (``relu(pre) * (pre > threshold)``) or ``topk`` (``relu`` of the ``k`` largest
    pre-activations per row, zero elsewhere), then clamped to ``clamp_max`` when set.
    Reconstructions are ``n^-1(codes @ W_dec + b_dec)``, with ``W_dec`` rows unit-normalized
    first when ``normalize_decoder`` or ``rescale_acts_by_decoder_norm`` is set.

    Tensors are converted to float32 and checked (shapes agree, values finite) on
    construction. Treat them as read-only: ``encode`` keeps a copy per foreign device, which
    would go stale if they were changed in place. Use ``to`` or ``dataclasses.replace``.
    """

    W_enc: torch.Tensor
    """Encoder, shape (d_model, n_features)."""
    b_enc: torch.Tensor
    """Encoder bias, shape (n_features,)."""
    W_dec: torch.Tensor
    """Decoder as stored (not normalized), shape (n_features, d_model)."""
    b_dec: torch.Tensor
    """Decoder bias, shape (d_model,)."""
    format: SAEFormat
    """The on-disk format it was loaded from; ``save_sae`` writes this one."""
    activation: Activation
    """How pre-activations become codes: ``relu``, ``jumprelu`` or ``topk``."""
    apply_b_dec_to_input: bool = True
    """Subtract ``b_dec`` from the activations before encoding."""
    clamp_max: float | None = None
    """Upper clamp on codes; SplatNLP clamps to 6."""
    k: int | None = None
    """Number of codes kept per row; required by ``topk``, unused otherwise."""
    threshold: torch.Tensor | None = None
    """Per-feature threshold, shape (n_features,); required by ``jumprelu``."""
    normalize_decoder: bool = False
    """Decode with unit-norm ``W_dec`` rows (SplatNLP) instead of the stored rows."""
    rescale_acts_by_decoder_norm: bool = False
    """Multiply the pre-activations by the ``W_dec`` row norms before the activation and decode
    with unit-norm rows (SAELens TopK's option of that name): the codes are those a unit-norm
    decoder needs, and the top-k ranks features by ``pre * ||W_dec row||``."""
    normalize_activations: Normalization = "none"
    """SAELens's normalization of each input row, undone on the reconstruction:
    ``constant_scalar_rescale`` multiplies by ``activation_normalization_factor``;
    ``constant_norm_rescale`` scales each row to L2 norm ``sqrt(d_model)``; ``layer_norm``
    centres each row and divides it by its standard deviation (unbiased) plus 1e-5. The last
    two undo it with the row's own statistics, so ``decode`` then needs the activations."""
    activation_normalization_factor: float | None = None
    """The factor of ``constant_scalar_rescale``; None for every other normalization."""
    usage_ema: torch.Tensor | None = None
    """SplatNLP's running feature usage, shape (n_features,), if the checkpoint had one."""
    source: str | None = None
    """The path it was loaded from; error messages name it."""
    _device_copies: dict[torch.device, SAE] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        where = self.source or "SAE"
        if self.format not in SAE_FORMATS:
            raise ValueError(
                f"{where}: unknown SAE format {self.format!r}; expected one of {SAE_FORMATS}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"{where}: unknown activation {self.activation!r}; expected one of {ACTIVATIONS}"
            )
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValueError(
                f"{where}: unknown normalize_activations {self.normalize_activations!r}; "
                f"expected one of {NORMALIZATIONS}"
            )
        for name in ("apply_b_dec_to_input", "normalize_decoder", "rescale_acts_by_decoder_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{where}: {name} must be True or False; got {getattr(self, name)!r}"
                )
        self.W_enc = _as_float32(self.W_enc, "W_enc", where)
        self.b_enc = _as_float32(self.b_enc, "b_enc", where)
        self.W_dec = _as_float32(self.W_dec, "W_dec", where)
        self.b_dec = _as_float32(self.b_dec, "b_dec", where)
        if self.threshold is not None:
            self.threshold = _as_float32(self.threshold, "threshold", where)
        if self.usage_ema is not None:
            self.usage_ema = _as_float32(self.usage_ema, "usage_ema", where)

        if self.W_enc.ndim != 2:
            raise ValueError(
                f"{where}: W_enc must be 2-D (d_model, n_features); got shape {tuple(self.W_enc.shape)}"
            )
        d_model, n_features = self.W_enc.shape
        expected = {
            "b_enc": (n_features,),
            "W_dec": (n_features, d_model),
            "b_dec": (d_model,),
            "threshold": (n_features,),
            "usage_ema": (n_features,),
        }
        for name, shape in expected.items():
            tensor = getattr(self, name)
            if tensor is not None and tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{where}: {name} has shape {tuple(tensor.shape)}, but W_enc of shape "
                    f"{(d_model, n_features)} implies {shape} (d_model={d_model}, n_features={n_features})"
                )
        for name, tensor in self._tensors().items():
            if tensor.device != self.W_enc.device:
                raise ValueError(
                    f"{where}: {name} is on {tensor.device} but W_enc is on {self.W_enc.device}; "
                    "all tensors must share one device (use SAE.to)"
                )
            n_bad = int((~torch.isfinite(tensor)).sum())
            if n_bad:
                raise ValueError(
                    f"{where}: {name} has {n_bad} NaN/inf value(s) out of {tensor.numel()}; "
                    "expected finite weights"
                )

        if isinstance(self.k, numbers.Integral) and not isinstance(self.k, bool):
            self.k = int(self.k)  # numpy integers from configs or arrays
        if self.activation == "topk":
            if (
                isinstance(self.k, bool)
                or not isinstance(self.k, int)
                or not 1 <= self.k <= n_features
            ):
                raise ValueError(
                    f"{where}: activation 'topk' needs an integer k in 1..{n_features}; got k={self.k!r}"
                )
        elif self.k is not None:
            raise ValueError(
                f"{where}: k={self.k!r} is only used by activation 'topk', not {self.activation!r}"
            )
        if self.activation == "jumprelu" and self.threshold is None:
            raise ValueError(
                f"{where}: activation 'jumprelu' needs a threshold tensor of shape ({n_features},)"
            )
        if self.activation != "jumprelu" and self.threshold is not None:
            raise ValueError(
                f"{where}: a threshold is only used by activation 'jumprelu', not {self.activation!r}"
            )
        if self.clamp_max is not None and not (
            isinstance(self.clamp_max, int | float) and 0 < self.clamp_max < float("inf")
        ):
            raise ValueError(
                f"{where}: clamp_max must be a positive finite number or None; got {self.clamp_max!r}"
            )
        factor = self.activation_normalization_factor
        if self.normalize_activations == "constant_scalar_rescale":
            if not _positive_finite(factor):
                raise ValueError(
                    f"{where}: normalize_activations 'constant_scalar_rescale' needs a positive "
                    f"finite activation_normalization_factor; got {factor!r}"
                )
            self.activation_normalization_factor = float(factor)
        elif factor is not None:
            raise ValueError(
                f"{where}: activation_normalization_factor={factor!r} is only used by "
                f"normalize_activations 'constant_scalar_rescale', not {self.normalize_activations!r}"
            )
        if self.normalize_activations == "layer_norm" and d_model < 2:
            raise ValueError(
                f"{where}: normalize_activations 'layer_norm' needs d_model >= 2 for a standard "
                f"deviation; got d_model={d_model}"
            )

    def __repr__(self) -> str:
        return (
            f"SAE(format={self.format!r}, d_model={self.d_model}, n_features={self.n_features}, "
            f"activation={self.activation!r}, k={self.k}, clamp_max={self.clamp_max}, "
            f"rescale_acts_by_decoder_norm={self.rescale_acts_by_decoder_norm}, "
            f"normalize_activations={self.normalize_activations!r}, "
            f"device={self.W_enc.device}, source={self.source!r})"
        )

    @property
    def d_model(self) -> int:
        """Width of the activations the SAE reads."""
        return int(self.W_enc.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features (latents)."""
        return int(self.W_enc.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature codes of a batch of activations.

        Parameters
        ----------
        x : tensor of shape (n_examples, d_model)
            Any float dtype; computed in float32 on ``x``'s device. Safe to call chunk by chunk.

        Returns
        -------
        codes : float32 tensor of shape (n_examples, n_features), on ``x``'s device
        """
        x = _check_batch(
            x, self.d_model, what="activations", dim_name="d_model", owner="the SAE expects"
        )
        sae = self._on(x.device)
        # SAELens order (SAE.process_sae_in): normalize the row, then subtract b_dec.
        x = sae._normalize_in(x)
        if sae.apply_b_dec_to_input:
            x = x - sae.b_dec
        pre = x @ sae.W_enc + sae.b_enc
        if sae.rescale_acts_by_decoder_norm:
            # SAELens TopKSAE.encode: hidden_pre * W_dec.norm(dim=-1) before the top-k; decode
            # divides by the same norms. Zero rows give zero pre-activations, never a code.
            pre = pre * sae.W_dec.norm(dim=1)
        codes = torch.relu(pre)
        if sae.activation == "jumprelu":
            # SAELens' JumpReLU: relu(pre) gated by pre > threshold (the relu only matters for
            # negative thresholds, which SAELens also maps to zero codes).
            codes = codes * (pre > sae.threshold)
        elif sae.activation == "topk":
            top = torch.topk(codes, sae.k, dim=-1, sorted=False)
            codes = torch.zeros_like(codes).scatter_(-1, top.indices, top.values)
        if sae.clamp_max is not None:
            codes = codes.clamp(max=sae.clamp_max)
        return codes

    def decode(self, codes: torch.Tensor, *, x: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct activations from codes.

        Parameters
        ----------
        codes : tensor of shape (n_examples, n_features)
        x : tensor of shape (n_examples, d_model), optional
            The activations the codes were computed from. Needed only when
            ``normalize_activations`` is ``constant_norm_rescale`` or ``layer_norm``, whose
            reconstruction is un-normalized with each row's own norm (or mean and standard
            deviation), as SAELens does with the statistics it keeps from ``encode``.

        Returns
        -------
        x_hat : float32 tensor of shape (n_examples, d_model), on ``codes``' device.
            Uses unit-norm decoder rows when ``normalize_decoder`` or
            ``rescale_acts_by_decoder_norm`` is set.

        Raises
        ------
        ValueError
            If ``x`` is needed but missing, or does not match ``codes`` row for row.
        """
        codes = _check_batch(
            codes, self.n_features, what="codes", dim_name="n_features", owner="the SAE has"
        )
        sae = self._on(codes.device)
        unit = sae.normalize_decoder or sae.rescale_acts_by_decoder_norm
        x_hat = codes @ sae.decoder_directions(normalized=unit) + sae.b_dec
        return sae._normalize_out(x_hat, x)

    @torch.no_grad()
    def decode_csr(self, codes: Any, *, x: np.ndarray | None = None) -> np.ndarray:
        """:meth:`decode` for sparse codes, on the CPU: a sparse x dense product (``nnz x d_model``
        multiply-adds instead of ``n_examples x n_features x d_model``: 11x fewer at SplatNLP's
        Full SAE, ~190 of 2,048 active).

        Parameters
        ----------
        codes : sparse matrix of shape (n_examples, n_features)
        x : array of shape (n_examples, d_model), optional, as for :meth:`decode`

        Returns
        -------
        x_hat : float32 array of shape (n_examples, d_model)
        """
        import scipy.sparse as sp  # only the information test decodes sparse codes

        if not sp.issparse(codes) or codes.ndim != 2 or codes.shape[1] != self.n_features:
            got = f"shape {codes.shape}" if sp.issparse(codes) else type(codes).__name__
            raise ValueError(
                f"codes must be a scipy sparse matrix of shape (n_examples, {self.n_features}) (the SAE "
                f"has {self.n_features} features), got {got}"
            )
        if x is not None and np.shape(x)[0] != codes.shape[0]:
            raise ValueError(f"x has {np.shape(x)[0]} rows and codes have {codes.shape[0]}; expected the same examples")
        sae = self if self.W_dec.device.type == "cpu" else self.to("cpu")
        unit = sae.normalize_decoder or sae.rescale_acts_by_decoder_norm
        directions = sae.decoder_directions(normalized=unit).detach().numpy()
        x_hat = np.asarray(sp.csr_matrix(codes, dtype=np.float32) @ directions) + sae.b_dec.detach().numpy()
        tx = None if x is None else torch.from_numpy(np.array(x, dtype=np.float32))
        return sae._normalize_out(torch.from_numpy(x_hat.astype(np.float32, copy=False)), tx).numpy()

    def decoder_directions(self, *, normalized: bool = True) -> torch.Tensor:
        """Decoder rows, one direction per feature.

        Parameters
        ----------
        normalized : bool, default True
            Scale each row to unit L2 norm. All-zero rows (dead features) stay zero.

        Returns
        -------
        directions : float32 tensor of shape (n_features, d_model)
        """
        if not normalized:
            return self.W_dec
        norms = self.W_dec.norm(dim=1, keepdim=True)
        # Dividing a zero row by its zero norm would give NaN; a dead feature has no direction.
        return torch.where(norms > 0, self.W_dec / torch.where(norms > 0, norms, 1.0), 0.0)

    def to(self, device: torch.device | str) -> SAE:
        """A copy with every tensor on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            W_enc=move(self.W_enc),
            b_enc=move(self.b_enc),
            W_dec=move(self.W_dec),
            b_dec=move(self.b_dec),
            threshold=move(self.threshold),
            usage_ema=move(self.usage_ema),
        )

    @torch.no_grad()
    def reconstruction_fvu(self, x: torch.Tensor) -> float:
        """Fraction of variance unexplained by ``decode(encode(x))``.

        ``sum((x - x_hat)**2) / sum((x - x.mean(0))**2)``: 0 for a perfect reconstruction,
        about 1 for one no better than the mean.

        Parameters
        ----------
        x : tensor of shape (n_examples, d_model)

        Raises
        ------
        ValueError
            If ``x`` has no variance (e.g. a single row), where the FVU is undefined.
        """
        x = _check_batch(
            x, self.d_model, what="activations", dim_name="d_model", owner="the SAE expects"
        )
        x_hat = self.decode(self.encode(x), x=x)
        # float64 sums: both are sums of many squares and the ratio can be close to 0 or 1.
        x64 = x.double()
        residual = ((x64 - x_hat.double()) ** 2).sum()
        total = ((x64 - x64.mean(dim=0)) ** 2).sum()
        if total == 0:
            raise ValueError(
                f"activations of shape {tuple(x.shape)} have zero variance, so the FVU is undefined; "
                "pass at least two distinct rows"
            )
        return float(residual / total)

    def _normalize_in(self, x: torch.Tensor) -> torch.Tensor:
        """SAELens's run_time_activation_norm_fn_in for ``normalize_activations``."""
        mode = self.normalize_activations
        if mode == "none":
            return x
        if mode == "constant_scalar_rescale":
            return x * self.activation_normalization_factor
        if mode == "constant_norm_rescale":
            return x * self._norm_coefficient(x)
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / (centred.std(dim=-1, keepdim=True) + LAYER_NORM_EPS)

    def _normalize_out(self, x_hat: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        """SAELens's run_time_activation_norm_fn_out, with the statistics taken from ``x``."""
        mode = self.normalize_activations
        if mode == "none":
            return x_hat
        if mode == "constant_scalar_rescale":
            return x_hat / self.activation_normalization_factor
        if x is None:
            raise ValueError(
                f"{self.source or 'SAE'}: normalize_activations={mode!r} undoes the normalization "
                "with the statistics of each input row, which the codes do not carry; pass the "
                "activations the codes came from: decode(codes, x=x)"
            )
        x = _check_batch(
            x, self.d_model, what="activations", dim_name="d_model", owner="the SAE expects"
        ).to(x_hat.device)
        if x.shape[0] != x_hat.shape[0]:
            raise ValueError(
                f"decode got {x_hat.shape[0]} rows of codes but {x.shape[0]} rows of activations; "
                "expected the activations the codes were computed from, row for row"
            )
        if mode == "constant_norm_rescale":
            return x_hat / self._norm_coefficient(x)
        # SAELens multiplies back by the plain std, without the eps it divided by.
        mean = x.mean(dim=-1, keepdim=True)
        return x_hat * (x - mean).std(dim=-1, keepdim=True) + mean

    def _norm_coefficient(self, x: torch.Tensor) -> torch.Tensor:
        """``sqrt(d_model) / ||row||`` per row (SAELens constant_norm_rescale)."""
        norms = x.norm(dim=-1, keepdim=True)
        zero = (norms == 0).squeeze(-1)
        if zero.any():
            raise ValueError(
                f"activation row {int(zero.nonzero()[0])} is all zeros, so "
                "normalize_activations='constant_norm_rescale' (scale each row to norm "
                "sqrt(d_model)) is undefined for it; expected rows with a nonzero norm"
            )
        return self.d_model**0.5 / norms

    def _tensors(self) -> dict[str, torch.Tensor]:
        names = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "usage_ema")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def _on(self, device: torch.device) -> SAE:
        """This SAE on ``device``, copied once per foreign device so chunked calls move nothing."""
        if device == self.W_enc.device:
            return self
        if device not in self._device_copies:
            self._device_copies[device] = self.to(device)
        return self._device_copies[device]


def splatnlp_sae(
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
    *,
    usage_ema: torch.Tensor | None = None,
) -> SAE:
    """An SAE with SplatNLP's conventions: ReLU clamped to [0, 6], unit-norm decoder rows.

    Parameters
    ----------
    W_enc : tensor of shape (d_model, n_features)
    b_enc : tensor of shape (n_features,)
    W_dec : tensor of shape (n_features, d_model), as trained (not normalized)
    b_dec : tensor of shape (d_model,)
    usage_ema : tensor of shape (n_features,), optional
    """
    return SAE(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, usage_ema=usage_ema, **_SPLATNLP)


def detect_sae_format(path: str | Path) -> SAEFormat:
    """The format of the SAE at ``path``, from its file names alone.

    A ``*.pt``/``*.pth`` file is ``splatnlp``; a folder with ``sae_weights.safetensors`` is
    ``saelens``, one with ``sae.safetensors`` is ``sparsify``, and one holding exactly one
    ``*.pt``/``*.pth`` file is ``splatnlp``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` matches none of the layouts above.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no SAE at {path}: the path does not exist; expected {_LAYOUTS}")
    if path.is_file():
        if path.suffix in _SPLATNLP_SUFFIXES:
            return "splatnlp"
        raise ValueError(f"cannot tell the SAE format of file {path}; expected {_LAYOUTS}")
    if (path / _SAELENS_WEIGHTS).is_file():
        return "saelens"
    if (path / _SPARSIFY_WEIGHTS).is_file():
        return "sparsify"
    if len(_checkpoints_in(path)) == 1:
        return "splatnlp"
    found = sorted(p.name for p in path.iterdir())
    shown = found[:20] + ([f"... {len(found) - 20} more"] if len(found) > 20 else [])
    raise ValueError(
        f"cannot tell the SAE format of folder {path} (holds {shown}); expected {_LAYOUTS}"
    )


def load_sae(
    path: str | Path, *, format: SAEFormat | None = None, d_model: int | None = None
) -> SAE:
    """Load an SAE from disk as float32 tensors on the CPU.

    Parameters
    ----------
    path : str or Path
        A file or folder in one of the layouts described in this module's docstring.
    format : {"splatnlp", "saelens", "sparsify"}, optional
        Skip detection and read ``path`` as this format.
    d_model : int, optional
        The expected activation width. By default it is taken from the config (``d_in``) or
        the length of the decoder bias; when given, a file that disagrees is an error.
        Weight matrices are transposed as needed so that their ``d_model`` axis lines up.

    Returns
    -------
    sae : SAE
        With ``W_enc`` of shape (d_model, n_features) and ``source`` set to ``path``.

    Raises
    ------
    FileNotFoundError
        If ``path`` or a file the format needs is missing.
    ValueError
        If a file is unreadable, a tensor is missing, misshapen or not finite, or ``format`` is
        unknown.
    UnsupportedSAEConfigError
        A ``ValueError`` (and ``NotImplementedError``): a SAELens config asks for something
        this loader does not implement, naming the key, its value and what is supported
        (e.g. ``normalize_activations='expected_average_only_in'``, which needs a dataset
        statistic the file lacks; a gated architecture; a cfg key it does not know).
    NotImplementedError
        If a sparsify config asks for something not implemented (a skip connection).
    """
    path = Path(path)
    if format is not None and format not in SAE_FORMATS:
        raise ValueError(
            f"unknown SAE format {format!r}; expected one of {SAE_FORMATS} or None to detect"
        )
    if d_model is not None and (
        isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1
    ):
        raise ValueError(f"d_model must be a positive int or None; got {d_model!r}")
    if not path.exists():
        raise FileNotFoundError(f"no SAE at {path}: the path does not exist; expected {_LAYOUTS}")
    fmt = format if format is not None else detect_sae_format(path)
    if fmt == "splatnlp":
        return _load_splatnlp(path, d_model)
    if fmt == "saelens":
        return _load_saelens(path, d_model)
    return _load_sparsify(path, d_model)


def save_sae(sae: SAE, path: str | Path) -> Path:
    """Write ``sae`` in its own format (``sae.format``); return the path ``load_sae`` accepts.

    - ``splatnlp``: one state-dict file with SplatNLP's keys. ``path`` is that file (``.pt`` or
      ``.pth``), or an existing folder, in which case ``path/"sae.pt"`` is written.
    - ``saelens``: folder ``path`` with ``cfg.json`` and ``sae_weights.safetensors``.
    - ``sparsify``: folder ``path`` with ``cfg.json`` and ``sae.safetensors``.

    Only the splatnlp format has a slot for ``usage_ema``; the others do not write it. A saelens
    SAE with ``rescale_acts_by_decoder_norm`` is written as is when it is top-k (SAELens reads
    the flag); otherwise the norms are folded into the weights, as SAELens's own inference
    export does (``W_enc`` columns and ``b_enc`` times the norms, ``W_dec`` rows divided by
    them), which gives the same codes and reconstructions up to float32 rounding.

    Raises
    ------
    ValueError
        If the format cannot express the SAE's settings (e.g. a top-k SAE as splatnlp, which
        always means clamped ReLU), or a splatnlp ``path`` is neither a folder nor a .pt file.
    """
    path = Path(path)
    _check_expressible(sae)
    if sae.format == "splatnlp":
        if path.is_dir():
            path = path / "sae.pt"
        elif path.suffix not in _SPLATNLP_SUFFIXES:
            raise ValueError(
                f"a splatnlp SAE is saved as one .pt/.pth file or into an existing folder; got {path}"
            )
        state = {
            "encoder.weight": _export(sae.W_enc.T),
            "encoder.bias": _export(sae.b_enc),
            "decoder.weight": _export(sae.W_dec.T),
            "decoder_bias": _export(sae.b_dec),
        }
        if sae.usage_ema is not None:
            state["usage_ema"] = _export(sae.usage_ema)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        return path

    path.mkdir(parents=True, exist_ok=True)
    if sae.format == "saelens":
        architecture = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk"}[sae.activation]
        cfg: dict[str, Any] = {
            "architecture": architecture,
            "d_in": sae.d_model,
            "d_sae": sae.n_features,
            "apply_b_dec_to_input": sae.apply_b_dec_to_input,
            "normalize_activations": sae.normalize_activations,
            "dtype": "float32",
        }
        if sae.activation_normalization_factor is not None:
            cfg["activation_normalization_factor"] = sae.activation_normalization_factor
        W_enc, b_enc, W_dec = sae.W_enc, sae.b_enc, sae.W_dec
        if sae.rescale_acts_by_decoder_norm and sae.activation != "topk":
            # SAELens has the flag on TopK only; fold it like
            # TopKTrainingSAE.process_state_dict_for_saving_inference (the threshold of a
            # BatchTopK-as-JumpReLU SAE is already in rescaled units, so it stays).
            W_enc, b_enc, W_dec = _fold_decoder_norms(W_enc, b_enc, W_dec)
        tensors = {
            "W_enc": _export(W_enc),
            "b_enc": _export(b_enc),
            "W_dec": _export(W_dec),
            "b_dec": _export(sae.b_dec),
        }
        if sae.activation == "topk":
            # Both spellings: v6 reads "k", earlier versions "activation_fn_kwargs".
            cfg["k"] = sae.k
            cfg["activation_fn_kwargs"] = {"k": sae.k}
            cfg["rescale_acts_by_decoder_norm"] = sae.rescale_acts_by_decoder_norm
        if sae.threshold is not None:
            tensors["threshold"] = _export(sae.threshold)
        weights = _SAELENS_WEIGHTS
    else:
        cfg = {
            "k": sae.k,
            "num_latents": sae.n_features,
            "expansion_factor": max(1, sae.n_features // sae.d_model),
            "d_in": sae.d_model,
            "normalize_decoder": False,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": not sae.apply_b_dec_to_input,
        }
        tensors = {
            "encoder.weight": _export(sae.W_enc.T),
            "encoder.bias": _export(sae.b_enc),
            "W_dec": _export(sae.W_dec),
            "b_dec": _export(sae.b_dec),
        }
        weights = _SPARSIFY_WEIGHTS
    (path / _CFG).write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(tensors, str(path / weights))
    return path


# ----------------------------------------------------------------------------- loaders


def _load_splatnlp(path: Path, d_model: int | None) -> SAE:
    """Read a SplatNLP state-dict file (or a folder holding exactly one)."""
    if path.is_dir():
        found = _checkpoints_in(path)
        if len(found) != 1:
            raise ValueError(
                f"expected exactly one *.pt/*.pth SplatNLP checkpoint in folder {path}; "
                f"found {sorted(p.name for p in found)}"
            )
        path = found[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors for corrupt files
        raise ValueError(
            f"could not read SplatNLP checkpoint {path} with torch.load(weights_only=True); "
            f"expected a torch.save'd state dict of tensors: {err}"
        ) from err
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"SplatNLP checkpoint {path} holds a {type(obj).__name__}; expected a state dict "
            "(optionally under 'state_dict' or 'model_state_dict')"
        )
    keys = ("encoder.weight", "encoder.bias", "decoder.weight", "decoder_bias")
    enc_w, b_enc, dec_w, b_dec = (_require(obj, key, path) for key in keys)
    d_in = _resolve_d_in(path, b_dec, "decoder_bias", d_model, cfg_d_in=None)
    usage_ema = _tensor(obj["usage_ema"], "usage_ema", path) if "usage_ema" in obj else None
    return SAE(
        W_enc=_d_in_first(enc_w, documented_axis=1, d_in=d_in, key="encoder.weight", source=path),
        b_enc=b_enc,
        W_dec=_d_in_first(dec_w, documented_axis=0, d_in=d_in, key="decoder.weight", source=path).T,
        b_dec=b_dec,
        usage_ema=usage_ema,
        source=str(path),
        **_SPLATNLP,
    )


# SAELens cfg.json keys. Sources: SAEConfig and its subclasses in sae_lens 6 (saes/*.py), the
# pre-6 flat SAEConfig / LanguageModelSAERunnerConfig, and handle_pre_6_0_config's renames.
# Keys that change the codes or the reconstruction, or are checked against the weights.
_SAELENS_HONOURED_KEYS = frozenset(
    {
        "architecture",
        "d_in",
        "d_sae",
        "apply_b_dec_to_input",
        "normalize_activations",
        "activation_normalization_factor",
        "activation_fn",  # SAELens 6 spelling of the pre-6 activation_fn_str
        "activation_fn_str",
        "activation_fn_kwargs",
        "k",
        "rescale_acts_by_decoder_norm",
        "finetuning_scaling_factor",
        "reshape_activations",
    }
)

# Keys known not to change encode or decode; accepted and ignored. Anything in neither set is
# refused, so a key that SAELens adds later cannot be dropped silently.
_SAELENS_IGNORED_KEYS = frozenset(
    # Provenance: which model and data the activations came from. The codes take the activation
    # rows as given. (Every hook_* key, e.g. hook_name, hook_layer, hook_head_index, hook_point,
    # is accepted by prefix: see _SAELENS_IGNORED_PREFIXES.)
    (
        "metadata",
        "model_name",
        "model_class_name",
        "model_kwargs",
        "model_from_pretrained_kwargs",
        "neuronpedia_id",
        "sae_lens_version",
        "sae_lens_training_version",
        "dataset_path",
        "dataset_trust_remote_code",
        "is_dataset_tokenized",
        "streaming",
        "context_size",
        "prepend_bos",
        "seqpos_slice",
        "exclude_special_tokens",
        "use_chat_formatting",
        "disable_concat_sequences",
        "sequence_separator_token",
    )
    # Placement and precision: SAELens casts to cfg dtype on cfg device; codes here are always
    # float32 on the input's device.
    + (
        "dtype",
        "device",
        "llm_device",
        "act_store_device",
        "autocast",
        "autocast_lm",
        "compile_llm",
        "llm_compilation_mode",
        "compile_sae",
        "sae_compilation_mode",
        # Sparse vs dense storage of the same top-k codes (TopKTrainingSAEConfig).
        "use_sparse_activations",
    )
    # Optimiser, schedule, run length and checkpointing.
    + (
        "lr",
        "lr_scheduler_name",
        "lr_warm_up_steps",
        "lr_end",
        "lr_decay_steps",
        "n_restart_cycles",
        "adam_beta1",
        "adam_beta2",
        "seed",
        "train_batch_size",
        "train_batch_size_tokens",
        "training_tokens",
        "total_training_tokens",
        "total_training_steps",
        "finetuning_method",
        "finetuning_tokens",
        "n_checkpoints",
        "checkpoint_path",
        "save_final_checkpoint",
        "output_path",
        "resume",
        "resume_from_checkpoint",
        "from_pretrained_path",
        "verbose",
        "n_eval_batches",
        "eval_batch_size_prompts",
        "n_batches_for_norm_estimate",
    )
    # Losses and sparsity penalties: they shaped the weights, they do not enter the forward pass.
    + (
        "l1_coefficient",
        "l1_warm_up_steps",
        "lp_norm",
        "l0_coefficient",
        "l0_warm_up_steps",
        "pre_act_loss_coefficient",
        "aux_loss_coefficient",
        "mse_loss_normalization",
        "scale_sparsity_penalty_by_decoder_norm",
        "use_ghost_grads",
        "noise_scale",
        "jumprelu_init_threshold",
        "jumprelu_bandwidth",
        "jumprelu_sparsity_loss_mode",
        "jumprelu_tanh_scale",
        "jumprelu_ste_to_input",
        "target_l0",
        "topk_threshold_lr",  # how BatchTopK's threshold was tracked; the tensor is what counts
        "matryoshka_widths",  # nested training losses; inference uses the full dictionary
        "use_matryoshka_aux_loss",
    )
    # Initialisation and training-time constraints (the saved weights are what they produced).
    + (
        "decoder_init_norm",
        "decoder_orthogonal_init",
        "decoder_heuristic_init",
        "decoder_heuristic_init_norm",
        "init_encoder_as_decoder_transpose",
        "init_encoder_with_decoder_transpose_factor",
        "b_dec_init_method",
        "normalize_sae_decoder",
        "expansion_factor",  # d_sae is checked against the weights instead
    )
    # Dead-feature tracking and resampling.
    + (
        "feature_sampling_window",
        "feature_sampling_method",
        "dead_feature_window",
        "dead_feature_threshold",
        "dead_feature_estimation_method",
        "resample_batches",
        "feature_reinit_scale",
    )
    # Activation store and caching.
    + (
        "n_batches_in_buffer",
        "store_batch_size",
        "store_batch_size_prompts",
        "tokens_per_buffer",
        "use_cached_activations",
        "cached_activations_path",
        "activations_mixing_fraction",
        "prefetch_llm_batches",
    )
    # Logging.
    + (
        "logger",
        "log_to_wandb",
        "log_activations_store_to_wandb",
        "log_optimizer_state_to_wandb",
        "log_weights_to_wandb",
        "wandb_project",
        "wandb_id",
        "wandb_entity",
        "wandb_log_frequency",
        "eval_every_n_wandb_logs",
        "run_name",
    )
)
# hook_* and hf_hook_* name the TransformerLens / Hugging Face hook point, layer and head the
# activations were read at: where the rows come from, not how they are encoded.
_SAELENS_IGNORED_PREFIXES = ("hook_", "hf_hook_")

# Training checkpoints of these save as JumpReLU for inference (BatchTopKTrainingSAE
# .process_state_dict_for_saving_inference): threshold = topk_threshold for every feature.
_SAELENS_BATCHTOPK = ("batchtopk", "matryoshka_batchtopk")
_SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu", *_SAELENS_BATCHTOPK)
_SAELENS_REFUSED_ARCHITECTURES = {
    "gated": "its gate and magnitude paths (b_gate, b_mag, r_mag) are not implemented here",
    "abstopk": "its codes are signed (top-k by |pre|, no ReLU); codes here are non-negative",
    "transcoder": "a transcoder reconstructs another hook (d_out); this loads SAEs",
    "skip_transcoder": "a transcoder reconstructs another hook (d_out); this loads SAEs",
    "jumprelu_transcoder": "a transcoder reconstructs another hook (d_out); this loads SAEs",
    "jumprelu_skip_transcoder": "a transcoder reconstructs another hook (d_out); this loads SAEs",
    "temporal": "its codes attend over earlier tokens, not one row at a time",
    "matching_pursuit": "its codes come from iterative matching pursuit, not one affine map",
}
# normalize_activations values that need dataset statistics cfg.json does not hold.
_SAELENS_NEEDS_STATISTICS = {
    "expected_average_only_in": (
        "inputs must be pre-scaled by sqrt(d_in) / (mean activation norm over the training "
        "data), a factor cfg.json does not store; fold it into the weights (SAELens "
        "fold_activation_norm_scaling_factor) and set 'none'"
    ),
    "covariance_whitening": (
        "inputs must be whitened with the training data's mean and covariance, which "
        "cfg.json does not store; fold them into the weights (SAELens "
        "fold_activation_whitening) and set 'none'"
    ),
}


def _load_saelens(path: Path, d_model: int | None) -> SAE:
    """Read a SAELens folder: cfg.json + sae_weights.safetensors.

    Follows SAELens 6 (``SAE.load_from_disk``, and ``handle_pre_6_0_config`` for older flat
    configs); every cfg key is honoured, ignored as irrelevant (``_SAELENS_IGNORED_KEYS``) or
    refused with an ``UnsupportedSAEConfigError``.
    """
    cfg_path, weights_path = _folder_files(path, _SAELENS_WEIGHTS, "saelens")
    cfg = _read_cfg(cfg_path)
    # SAELens v6 moved provenance under "metadata"; older files may keep everything flat.
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), Mapping) else {}

    def get(key: str, default: Any = None) -> Any:
        return cfg[key] if cfg.get(key) is not None else meta.get(key, default)

    def refuse(key: str, value: Any, why: str) -> UnsupportedSAEConfigError:
        return UnsupportedSAEConfigError(f"{cfg_path}: {key}={value!r} is not supported: {why}")

    architecture = get("architecture", "standard")
    if architecture not in _SAELENS_ARCHITECTURES:
        reason = _SAELENS_REFUSED_ARCHITECTURES.get(architecture, "unknown architecture")
        raise refuse("architecture", architecture, f"{reason}; supported: {_SAELENS_ARCHITECTURES}")
    _check_saelens_keys(cfg, cfg_path)

    activation_fn = get("activation_fn_str")
    if activation_fn is None:
        activation_fn = get("activation_fn")
    if architecture == "standard" and activation_fn == "topk":
        # Pre-v6 SAELens expressed top-k as a standard SAE with activation_fn_str "topk".
        architecture = "topk"
    allowed_fns = (None, "relu", "topk") if architecture == "topk" else (None, "relu")
    if activation_fn not in allowed_fns:
        raise refuse(
            "activation_fn_str" if "activation_fn_str" in cfg else "activation_fn",
            activation_fn,
            f"architecture {architecture!r} takes {allowed_fns[1:]} (SAELens 6 would silently "
            "use ReLU instead)",
        )

    kwargs = get("activation_fn_kwargs")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, Mapping) or set(kwargs) - {"k"}:
        raise refuse("activation_fn_kwargs", kwargs, "expected an object with at most the key 'k'")
    raw_k, kwargs_k = get("k"), kwargs.get("k")
    if raw_k is not None and kwargs_k is not None and raw_k != kwargs_k:
        raise refuse("k", raw_k, f"activation_fn_kwargs says k={kwargs_k!r}; expected one k")
    raw_k = raw_k if raw_k is not None else kwargs_k
    k = None
    if architecture == "topk":
        k = _cfg_int(raw_k, "k", cfg_path)
    elif raw_k is not None and architecture not in _SAELENS_BATCHTOPK:
        # BatchTopK's k is a training-batch average; its inference form thresholds instead.
        raise refuse("k", raw_k, f"k is only used by architecture 'topk', not {architecture!r}")

    rescale = get("rescale_acts_by_decoder_norm")
    if rescale is None:
        # Inference TopKSAEConfig defaults to False; the BatchTopK training configs to True.
        rescale = architecture in _SAELENS_BATCHTOPK
    if not isinstance(rescale, bool):
        raise refuse("rescale_acts_by_decoder_norm", rescale, "expected true or false")
    if rescale and architecture not in ("topk", *_SAELENS_BATCHTOPK):
        raise refuse(
            "rescale_acts_by_decoder_norm",
            rescale,
            f"SAELens defines it for TopK and BatchTopK only, not architecture {architecture!r}",
        )

    normalize = get("normalize_activations")
    if normalize is None or normalize is False:
        normalize = "none"
    elif normalize is True:
        # Pre-v6 boolean: True meant the Anthropic April-update scaling (handle_pre_6_0_config).
        normalize = "expected_average_only_in"
    if normalize in _SAELENS_NEEDS_STATISTICS:
        raise refuse("normalize_activations", normalize, _SAELENS_NEEDS_STATISTICS[normalize])
    if normalize not in NORMALIZATIONS:
        raise refuse("normalize_activations", normalize, f"expected one of {NORMALIZATIONS}")
    factor = get("activation_normalization_factor")
    if normalize == "constant_scalar_rescale":
        if not _positive_finite(factor):
            raise refuse(
                "activation_normalization_factor",
                factor,
                "normalize_activations 'constant_scalar_rescale' needs a positive finite number",
            )
    elif factor is not None:
        if factor != 1 or isinstance(factor, bool):
            raise refuse(
                "activation_normalization_factor",
                factor,
                f"it only acts with normalize_activations 'constant_scalar_rescale', not "
                f"{normalize!r}; expected 1.0 or no key",
            )
        factor = None  # TemporalSAEConfig's default, inert without constant_scalar_rescale

    reshape = get("reshape_activations", "none")
    if reshape not in ("none", "hook_z"):
        raise refuse("reshape_activations", reshape, "expected 'none' or 'hook_z'")
    # hook_z only flattens (n_heads, d_head) into d_in and back; rows here are already flat.

    apply_b_dec = get("apply_b_dec_to_input", True)
    if not isinstance(apply_b_dec, bool):
        raise ValueError(
            f"{cfg_path}: apply_b_dec_to_input must be true or false; got {apply_b_dec!r}"
        )
    finetuning = get("finetuning_scaling_factor", False)
    if not isinstance(finetuning, bool):
        raise refuse("finetuning_scaling_factor", finetuning, "expected true or false")

    tensors = _read_safetensors(weights_path)
    _check_saelens_tensors(tensors, architecture, weights_path)
    b_dec = _require(tensors, "b_dec", weights_path)
    d_in = _resolve_d_in(
        weights_path,
        b_dec,
        "b_dec",
        d_model,
        cfg_d_in=_cfg_int(get("d_in"), "d_in", cfg_path, required=False),
    )
    W_enc = _d_in_first(
        _require(tensors, "W_enc", weights_path),
        documented_axis=0,
        d_in=d_in,
        key="W_enc",
        source=weights_path,
    )
    W_dec = _d_in_first(
        _require(tensors, "W_dec", weights_path),
        documented_axis=1,
        d_in=d_in,
        key="W_dec",
        source=weights_path,
    ).T
    n_features = W_enc.shape[1]
    d_sae = _cfg_int(get("d_sae"), "d_sae", cfg_path, required=False)
    if d_sae is not None and d_sae != n_features:
        raise ValueError(
            f"{cfg_path} says d_sae={d_sae}, but W_enc in {weights_path} has {n_features} features"
        )

    activation: Activation
    threshold = None
    if architecture == "standard":
        activation = "relu"
    elif architecture == "topk":
        activation = "topk"
    else:
        activation = "jumprelu"
        threshold = _saelens_threshold(tensors, architecture, n_features, weights_path)

    W_dec = _apply_finetuning_scaling(
        tensors,
        W_dec,
        finetuning=finetuning,
        rescale=rescale,
        cfg_path=cfg_path,
        weights_path=weights_path,
    )
    return SAE(
        W_enc=W_enc,
        b_enc=_require(tensors, "b_enc", weights_path),
        W_dec=W_dec,
        b_dec=b_dec,
        format="saelens",
        activation=activation,
        apply_b_dec_to_input=apply_b_dec,
        k=k,
        threshold=threshold,
        rescale_acts_by_decoder_norm=rescale,
        normalize_activations=normalize,
        activation_normalization_factor=factor,
        source=str(path),
    )


def _check_saelens_keys(cfg: Mapping[str, Any], cfg_path: Path) -> None:
    """Refuse cfg keys that are neither honoured nor known to be irrelevant to encoding."""
    unknown = {
        key: value
        for key, value in cfg.items()
        if key not in _SAELENS_HONOURED_KEYS
        and key not in _SAELENS_IGNORED_KEYS
        and not key.startswith(_SAELENS_IGNORED_PREFIXES)
    }
    if unknown:
        shown = {key: unknown[key] for key in sorted(unknown)}
        raise UnsupportedSAEConfigError(
            f"{cfg_path}: unknown SAELens cfg key(s) {sorted(unknown)} (values {shown}); a key "
            "this loader does not know might change the codes, so it refuses rather than drop "
            f"it. Honoured keys: {sorted(_SAELENS_HONOURED_KEYS)}; keys known to be irrelevant "
            "(provenance, hook_*, placement, training-only) are listed in _SAELENS_IGNORED_KEYS"
        )


def _check_saelens_tensors(
    tensors: Mapping[str, torch.Tensor], architecture: str, weights_path: Path
) -> None:
    """Refuse tensors the architecture does not use (SAELens's strict load_state_dict does too)."""
    expected = {"W_enc", "b_enc", "W_dec", "b_dec", "scaling_factor", "finetuning_scaling_factor"}
    if architecture == "jumprelu":
        expected |= {"threshold", "log_threshold"}
    elif architecture in _SAELENS_BATCHTOPK:
        expected |= {"threshold", "topk_threshold"}
    extra = sorted(set(tensors) - expected)
    if extra:
        raise UnsupportedSAEConfigError(
            f"{weights_path} holds tensor(s) {extra} that architecture {architecture!r} does not "
            f"use; expected only {sorted(expected)}. Check the cfg.json architecture"
        )


def _saelens_threshold(
    tensors: Mapping[str, torch.Tensor], architecture: str, n_features: int, weights_path: Path
) -> torch.Tensor:
    """The per-feature JumpReLU threshold of a jumprelu or BatchTopK checkpoint."""
    spellings = ("threshold", "log_threshold" if architecture == "jumprelu" else "topk_threshold")
    found = [key for key in spellings if key in tensors]
    if len(found) > 1:
        raise UnsupportedSAEConfigError(
            f"{weights_path} holds both {found[0]!r} and {found[1]!r}; expected one threshold"
        )
    if not found:
        _require(tensors, spellings[0], weights_path)  # raises, naming the tensor and the keys
    key = found[0]
    value = _tensor(tensors[key], key, weights_path)
    if key == "log_threshold":
        # SAELens training checkpoints before 6 stored the threshold in log space.
        return value.exp()
    if key == "topk_threshold":
        # BatchTopKTrainingSAE.process_state_dict_for_saving_inference:
        # threshold = ones_like(b_enc) * topk_threshold.
        if value.numel() != 1:
            raise ValueError(
                f"{weights_path}: 'topk_threshold' has shape {tuple(value.shape)}; expected a scalar"
            )
        return value.reshape(()).expand(n_features).clone()
    return value


def _apply_finetuning_scaling(
    tensors: Mapping[str, torch.Tensor],
    W_dec: torch.Tensor,
    *,
    finetuning: bool,
    rescale: bool,
    cfg_path: Path,
    weights_path: Path,
) -> torch.Tensor:
    """Fold SAELens <= 5's finetuning scaling factor into the decoder rows.

    SAELens 5 decoded ``(codes * scaling_factor) @ W_dec + b_dec``, which is
    ``codes @ (scaling_factor[:, None] * W_dec) + b_dec``. SAELens 6 drops an all-ones factor
    and refuses any other one when ``finetuning_scaling_factor`` is false
    (``read_sae_components_from_disk``); so does this.
    """
    found = [key for key in ("scaling_factor", "finetuning_scaling_factor") if key in tensors]
    if not found:
        return W_dec
    if len(found) > 1:
        raise UnsupportedSAEConfigError(
            f"{weights_path} holds both 'scaling_factor' and 'finetuning_scaling_factor'; "
            "expected one"
        )
    scale = _tensor(tensors[found[0]], found[0], weights_path)
    if tuple(scale.shape) != (W_dec.shape[0],):
        raise ValueError(
            f"{weights_path}: {found[0]!r} has shape {tuple(scale.shape)}; expected "
            f"({W_dec.shape[0]},), one factor per feature"
        )
    if torch.allclose(scale, torch.ones_like(scale)):
        return W_dec  # SAELens 6's test; some versions wrote an all-ones factor regardless
    if not finetuning:
        raise UnsupportedSAEConfigError(
            f"{cfg_path}: finetuning_scaling_factor=False, but {weights_path} holds a "
            f"{found[0]!r} that is not all ones; expected finetuning_scaling_factor=true "
            "(SAELens refuses this file too)"
        )
    if rescale:
        raise UnsupportedSAEConfigError(
            f"{cfg_path}: finetuning_scaling_factor=True together with "
            "rescale_acts_by_decoder_norm=True is not supported: SAELens never combined them, "
            "and folding the factor would change the decoder norms the codes are scaled by"
        )
    return W_dec * scale[:, None]


def _load_sparsify(path: Path, d_model: int | None) -> SAE:
    """Read an EleutherAI sparsify folder: cfg.json + sae.safetensors."""
    cfg_path, weights_path = _folder_files(path, _SPARSIFY_WEIGHTS, "sparsify")
    cfg = _read_cfg(cfg_path)
    if cfg.get("skip_connection"):
        raise NotImplementedError(
            f"{cfg_path}: skip_connection=true (a W_skip term) is not supported"
        )
    if cfg.get("activation") not in (None, "topk"):
        raise NotImplementedError(
            f"{cfg_path}: activation={cfg['activation']!r} is not supported; expected 'topk'"
        )
    k = _cfg_int(cfg.get("k"), "k", cfg_path)
    tensors = _read_safetensors(weights_path)
    b_dec = _require(tensors, "b_dec", weights_path)
    d_in = _resolve_d_in(
        weights_path,
        b_dec,
        "b_dec",
        d_model,
        cfg_d_in=_cfg_int(cfg.get("d_in"), "d_in", cfg_path, required=False),
    )
    W_enc = _d_in_first(
        _require(tensors, "encoder.weight", weights_path),
        documented_axis=1,
        d_in=d_in,
        key="encoder.weight",
        source=weights_path,
    )
    W_dec = _d_in_first(
        _require(tensors, "W_dec", weights_path),
        documented_axis=1,
        d_in=d_in,
        key="W_dec",
        source=weights_path,
    ).T
    # sparsify sizes the dictionary as num_latents, or expansion_factor * d_in when that is 0.
    num_latents = _cfg_int(cfg.get("num_latents"), "num_latents", cfg_path, required=False) or None
    expansion = _cfg_int(cfg.get("expansion_factor"), "expansion_factor", cfg_path, required=False)
    expected = num_latents if num_latents else (expansion * d_in if expansion else None)
    if expected is not None and expected != W_enc.shape[1]:
        raise ValueError(
            f"{cfg_path} implies {expected} latents (num_latents={cfg.get('num_latents')!r}, "
            f"expansion_factor={cfg.get('expansion_factor')!r}, d_in={d_in}), but encoder.weight in "
            f"{weights_path} has {W_enc.shape[1]}"
        )
    return SAE(
        W_enc=W_enc,
        b_enc=_require(tensors, "encoder.bias", weights_path),
        W_dec=W_dec,
        b_dec=b_dec,
        format="sparsify",
        activation="topk",
        # Transcoders map one site to another, so sparsify does not centre their input on b_dec.
        apply_b_dec_to_input=not cfg.get("transcode", False),
        k=k,
        source=str(path),
    )


# ----------------------------------------------------------------------------- helpers


def _checkpoints_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix in _SPLATNLP_SUFFIXES]


def _folder_files(path: Path, weights: str, fmt: str) -> tuple[Path, Path]:
    """cfg.json and the weights file of a folder-based format, which must both exist."""
    if not path.is_dir():
        raise ValueError(f"a {fmt} SAE is a folder holding {_CFG} and {weights}; got file {path}")
    for name in (_CFG, weights):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{fmt} SAE folder {path} has no {name}; expected {_CFG} and {weights}, "
                f"found {sorted(p.name for p in path.iterdir())}"
            )
    return path / _CFG, path / weights


def _read_cfg(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"could not read SAE config {path} as JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"SAE config {path} holds a JSON {type(cfg).__name__}; expected an object")
    return cfg


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError, plus OS errors
        raise ValueError(f"could not read safetensors file {path}: {err}") from err


def _cfg_int(value: Any, key: str, cfg_path: Path, *, required: bool = True) -> int | None:
    """An integer config value; floats are accepted when whole (JSON writers vary)."""
    if value is None:
        if required:
            raise ValueError(f"{cfg_path} has no {key!r}; expected a positive integer")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{cfg_path}: {key}={value!r}; expected a non-negative integer")
    return value


def _require(tensors: Mapping[str, Any], key: str, source: Path) -> torch.Tensor:
    if key not in tensors:
        raise ValueError(f"{source} has no tensor {key!r}; found keys {sorted(map(str, tensors))}")
    return _tensor(tensors[key], key, source)


def _tensor(value: Any, key: str, source: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{source}: {key!r} is a {type(value).__name__}; expected a tensor")
    return value.detach().to(device="cpu", dtype=torch.float32)


def _resolve_d_in(
    source: Path, b_dec: torch.Tensor, key: str, d_model: int | None, *, cfg_d_in: int | None
) -> int:
    """The activation width, cross-checked between the bias, the config and the caller."""
    if b_dec.ndim != 1:
        raise ValueError(
            f"{source}: {key!r} has shape {tuple(b_dec.shape)}; expected 1-D (d_model,)"
        )
    claims = {f"{key} length": b_dec.shape[0], "cfg d_in": cfg_d_in, "d_model argument": d_model}
    given = {name: v for name, v in claims.items() if v is not None}
    if len(set(given.values())) > 1:
        raise ValueError(f"{source}: inconsistent d_model: {given}; expected them to agree")
    return int(b_dec.shape[0])


def _d_in_first(
    tensor: torch.Tensor, *, documented_axis: int, d_in: int, key: str, source: Path
) -> torch.Tensor:
    """``tensor`` as (d_in, other), transposing it when stored the other way round.

    A square matrix is ambiguous, so it keeps the documented layout.
    """
    if tensor.ndim != 2:
        raise ValueError(
            f"{source}: {key!r} has shape {tuple(tensor.shape)}; expected a 2-D matrix"
        )
    if tensor.shape[documented_axis] == d_in:
        stored_axis = documented_axis
    elif tensor.shape[1 - documented_axis] == d_in:
        stored_axis = 1 - documented_axis
    else:
        raise ValueError(
            f"{source}: {key!r} has shape {tuple(tensor.shape)}, but neither dimension matches "
            f"d_model {d_in}"
        )
    return (tensor if stored_axis == 0 else tensor.T).contiguous()


def _as_float32(value: Any, name: str, where: str) -> torch.Tensor:
    # Contiguous: a transposed view reduces in another order (W_dec.norm for the rescale), so
    # a loaded SAE would round differently from the one that was saved.
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float32).contiguous()
    try:
        return torch.as_tensor(value, dtype=torch.float32).contiguous()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{where}: {name} must be a tensor or array; got {type(value).__name__}"
        ) from err


def _check_batch(x: Any, width: int, *, what: str, dim_name: str, owner: str) -> torch.Tensor:
    """``x`` as a float32 (n, width) tensor, or an error saying what was expected."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{what} must be a torch.Tensor of shape (n_examples, {dim_name}); got {type(x).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D (n_examples, {dim_name}); got shape {tuple(x.shape)}"
            + (" (use x[None] for a single row)" if x.ndim == 1 else "")
        )
    if x.shape[-1] != width:
        raise ValueError(f"{what} have {dim_name} {x.shape[-1]}, but {owner} {width}")
    return x.to(torch.float32)


def _check_expressible(sae: SAE) -> None:
    """Refuse to save settings that the target format would silently lose."""
    fmt = sae.format
    # Only SAELens configs can say these; the other formats always mean the defaults.
    saelens_only = {"rescale_acts_by_decoder_norm": False, "normalize_activations": "none"}
    wanted: dict[str, Any]
    if fmt == "splatnlp":
        wanted = {key: value for key, value in _SPLATNLP.items() if key != "format"}
        wanted.update(saelens_only)
    elif fmt == "saelens":
        wanted = {"clamp_max": None, "normalize_decoder": False}
    else:
        wanted = {"activation": "topk", "clamp_max": None, "normalize_decoder": False}
        wanted.update(saelens_only)
    for name, value in wanted.items():
        if getattr(sae, name) != value:
            raise ValueError(
                f"cannot save as {fmt!r}: the format always means {name}={value!r}, but this SAE "
                f"has {name}={getattr(sae, name)!r}; change sae.format or use dataclasses.replace"
            )


def _fold_decoder_norms(
    W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rescale_acts_by_decoder_norm`` folded into the weights (SAELens's _fold_norm_topk).

    A zero row keeps a zero encoder column, so its feature still never fires.
    """
    norms = W_dec.norm(dim=1)
    safe = torch.where(norms > 0, norms, 1.0)
    return W_enc * norms, b_enc * norms, W_dec / safe[:, None]


def _positive_finite(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
    )


def _export(t: torch.Tensor) -> torch.Tensor:
    # Own, contiguous CPU storage: safetensors refuses views and tensors that share memory.
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
