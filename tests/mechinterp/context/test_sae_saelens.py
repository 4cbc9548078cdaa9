"""Tests for the SAELens side of splatnlp/mechinterp/context/sae.py: every cfg.json field.

Each honoured field is checked against a float64 reference written here in plain torch from
SAELens 6's formulas (saes/sae.py ``process_sae_in`` and ``_setup_activation_normalization``,
saes/topk_sae.py ``TopKSAE.encode`` / ``act_times_W_dec``, saes/jumprelu_sae.py,
saes/batchtopk_sae.py ``process_state_dict_for_saving_inference``, SAELens 5's
``apply_finetuning_scaling_factor``). Each refused field or value must raise a ValueError that
names it. sae_lens itself is not imported: it is not a dependency.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from splatnlp.mechinterp.context.sae import (
    SAE,
    UnsupportedSAEConfigError,
    load_sae,
    save_sae,
)

D_MODEL = 16
N_FEATURES = 64
N_EXAMPLES = 64
SEED = 0
EPS32 = torch.finfo(torch.float32).eps
# SAELens's layer_norm: (x - mean) / (std + 1e-5), std unbiased.
LN_EPS = 1e-5


# ----------------------------------------------------------------------------- builders


def make_weights(
    seed: int = SEED, *, d_model: int = D_MODEL, n_features: int = N_FEATURES
) -> dict[str, torch.Tensor]:
    """Random float32 weights, W_enc (d, n) and W_dec (n, d), decoder row norms e^(+-2)."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(n_features, d_model, generator=g)
    # Far from unit norm, so anything that forgets the decoder norms is visibly wrong.
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    W_dec = W_dec * torch.exp(0.8 * torch.randn(n_features, 1, generator=g))
    return {
        "W_enc": torch.randn(d_model, n_features, generator=g),
        "b_enc": 0.5 * torch.randn(n_features, generator=g),
        "W_dec": W_dec,
        "b_dec": 0.5 * torch.randn(d_model, generator=g),
    }


def make_x(seed: int = SEED + 1, *, n: int = N_EXAMPLES, d_model: int = D_MODEL) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, d_model, generator=g) + 0.5


def write_saelens(folder: Path, w: dict[str, torch.Tensor], cfg: dict, **extra) -> Path:
    """A SAELens folder in its documented layout, written without save_sae."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: w[key].contiguous() for key in ("W_enc", "b_enc", "W_dec", "b_dec")}
    tensors.update({key: torch.as_tensor(value).contiguous() for key, value in extra.items()})
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def v6_cfg(architecture: str = "standard", **overrides) -> dict:
    """A SAELens 6 inference cfg.json as SAE.save_model writes it."""
    cfg = {
        "architecture": architecture,
        "d_in": D_MODEL,
        "d_sae": N_FEATURES,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.54.12", "hook_name": "blocks.0.hook_resid_post"},
    }
    cfg.update(overrides)
    return cfg


# ----------------------------------------------------------------------------- references


def f32_atol(n_terms: int, scale):
    """Float32 rounding of a reduction over ``n_terms`` terms of magnitude ``scale``.

    ``scale`` may be a tensor, one bound per element: one global bound is too loose for ties.
    """
    return 8 * EPS32 * math.sqrt(n_terms) * scale


def assert_within(actual: torch.Tensor, expected: torch.Tensor, atol) -> None:
    """|actual - expected| <= atol elementwise; ``atol`` a number or a tensor of bounds."""
    assert actual.shape == expected.shape
    if actual.numel() == 0:
        return
    err = (actual.double() - expected.double()).abs()
    excess = err - torch.as_tensor(atol, dtype=torch.float64)
    worst = int(excess.argmax())
    assert (excess <= 0).all(), (
        f"{int((excess > 0).sum())} element(s) off; worst at flat index {worst}: "
        f"{float(actual.flatten()[worst])} vs {float(expected.flatten()[worst])}"
    )


def ref_normalize_in(x: torch.Tensor, mode: str, factor: float | None) -> torch.Tensor:
    if mode == "none":
        return x
    if mode == "constant_scalar_rescale":
        return x * factor
    if mode == "constant_norm_rescale":
        return x * (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
    assert mode == "layer_norm"
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / (centred.std(dim=-1, keepdim=True) + LN_EPS)


def ref_normalize_out(y: torch.Tensor, x: torch.Tensor, mode: str, factor: float | None):
    if mode == "none":
        return y
    if mode == "constant_scalar_rescale":
        return y / factor
    if mode == "constant_norm_rescale":
        return y / (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
    assert mode == "layer_norm"
    mean = x.mean(dim=-1, keepdim=True)
    return y * (x - mean).std(dim=-1, keepdim=True) + mean


def ref_pre(
    x: torch.Tensor,
    w: dict[str, torch.Tensor],
    *,
    apply_b_dec: bool = True,
    normalize: str = "none",
    factor: float | None = None,
    rescale: bool = False,
) -> torch.Tensor:
    """SAELens hidden_pre in float64, times the decoder norms when rescaling."""
    w64 = {key: value.double() for key, value in w.items()}
    sae_in = ref_normalize_in(x.double(), normalize, factor)
    if apply_b_dec:
        sae_in = sae_in - w64["b_dec"]
    pre = sae_in @ w64["W_enc"] + w64["b_enc"]
    if rescale:
        pre = pre * w64["W_dec"].norm(dim=1)
    return pre


def pre_atol(
    x_in: torch.Tensor, w: dict[str, torch.Tensor], *, rescale: bool = False, n_terms: int = D_MODEL
) -> torch.Tensor:
    """Per-element float32 tolerance of the pre-activations computed from the input ``x_in``."""
    w64 = {key: value.double() for key, value in w.items()}
    terms = (x_in.double().abs() + w64["b_dec"].abs()) @ w64["W_enc"].abs() + w64["b_enc"].abs()
    if rescale:
        terms = terms * w64["W_dec"].norm(dim=1)
    return f32_atol(n_terms + 1, terms)


def ref_topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """SAELens TopK: the k largest pre-activations per row, ReLU'd; zero elsewhere."""
    out = torch.zeros_like(pre)
    for row in range(pre.shape[0]):
        keep = torch.argsort(pre[row], descending=True, stable=True)[:k]
        out[row, keep] = pre[row, keep].clamp(min=0)
    return out


def ref_jumprelu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return pre.clamp(min=0) * (pre > threshold.double())


def ref_decode(
    codes: torch.Tensor,
    w: dict[str, torch.Tensor],
    x: torch.Tensor,
    *,
    normalize: str = "none",
    factor: float | None = None,
    rescale: bool = False,
) -> torch.Tensor:
    """SAELens decode in float64: act_times_W_dec + b_dec, then the out-normalization."""
    W_dec = w["W_dec"].double()
    codes = codes.double()
    if rescale:
        codes = codes / W_dec.norm(dim=1)
    y = codes @ W_dec + w["b_dec"].double()
    return ref_normalize_out(y, x.double(), normalize, factor)


def decode_atol(codes: torch.Tensor, w, x, *, normalize="none", factor=None, rescale=False):
    """Per-element tolerance of decode: a sum over n_features, then the out-normalization."""
    W_dec = w["W_dec"].double()
    rows = W_dec / W_dec.norm(dim=1, keepdim=True).clamp(min=1e-30) if rescale else W_dec
    terms = codes.double().abs() @ rows.abs() + w["b_dec"].double().abs()
    x64 = x.double()
    if normalize == "constant_scalar_rescale":
        terms = terms / factor
    elif normalize == "constant_norm_rescale":
        terms = terms * x64.norm(dim=-1, keepdim=True) / x.shape[-1] ** 0.5
    elif normalize == "layer_norm":
        terms = terms * x64.std(dim=-1, keepdim=True) + x64.mean(dim=-1, keepdim=True).abs()
    return f32_atol(N_FEATURES + 1, terms)


def topk_unambiguous(pre: torch.Tensor, atol: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: rounding within ``atol`` cannot change the ReLU'd top-k support.

    The k-th and k+1-th values must be further apart than their tolerances, and none of the
    top k+1 may be within its tolerance of zero.
    """
    order = pre.argsort(dim=1, descending=True)
    values, tols = pre.gather(1, order), atol.gather(1, order)
    gap_ok = values[:, k - 1] - values[:, k] > tols[:, k - 1] + tols[:, k]
    sign_ok = (values[:, : k + 1].abs() > tols[:, : k + 1]).all(dim=1)
    return gap_ok & sign_ok


def assert_topk_codes(codes: torch.Tensor, pre: torch.Tensor, k: int, atol: torch.Tensor) -> None:
    """Top-k codes against the reference, exactly where rounding cannot flip the selection.

    On a row with a near-tie either candidate is right, so there the sorted code values are
    compared instead. Most rows must be unambiguous, or the check says little.
    """
    expected = ref_topk(pre, k)
    clear = topk_unambiguous(pre, atol, k)
    assert clear.float().mean() > 0.9, "test data has too many near-ties"
    assert_within(codes[clear], expected[clear], atol[clear])
    torch.testing.assert_close(codes[clear] > 0, expected[clear] > 0, rtol=0, atol=0)
    if (~clear).any():
        row_atol = 2 * atol[~clear].max(dim=1, keepdim=True).values
        assert_within(
            codes[~clear].sort(dim=1).values, expected[~clear].sort(dim=1).values, row_atol
        )


# ----------------------------------------------------------------------------- honoured fields


def test_topk_rescale_acts_by_decoder_norm_same_support_on_every_row(tmp_path):
    """Issue 10 item 3: non-unit decoder norms + rescale_acts_by_decoder_norm on 5,000 rows."""
    k, n = 8, 5000
    # Seeds whose 5,000 rows have no near-tie at the top-k boundary (asserted below).
    w = make_weights(seed=1)
    x = make_x(seed=101, n=n)
    folder = write_saelens(
        tmp_path / "sae", w, v6_cfg("topk", k=k, rescale_acts_by_decoder_norm=True)
    )

    sae = load_sae(folder)
    codes = sae.encode(x)

    pre = ref_pre(x, w, rescale=True)
    expected = ref_topk(pre, k)
    atol = pre_atol(x, w, rescale=True)
    # No row of this fixed data has a near-tie, so float32 cannot flip any selection.
    assert topk_unambiguous(pre, atol, k).all()
    torch.testing.assert_close(codes > 0, expected > 0, rtol=0, atol=0)
    assert_within(codes, expected, atol)
    # The field matters on this data: ignoring it changes the support on most rows.
    ignored = ref_topk(ref_pre(x, w, rescale=False), k)
    assert ((ignored > 0) != (expected > 0)).any(dim=1).float().mean() > 0.8
    # Decoding divides the codes by the same norms (act_times_W_dec).
    assert_within(
        sae.decode(codes),
        ref_decode(codes, w, x, rescale=True),
        decode_atol(codes, w, x, rescale=True),
    )
    assert sae.rescale_acts_by_decoder_norm and sae.activation == "topk" and sae.k == k


@pytest.mark.parametrize("cfg_value", [False, None], ids=["false", "absent"])
def test_topk_without_rescale_ranks_raw_pre_activations(tmp_path, cfg_value):
    k = 5
    w = make_weights()
    x = make_x()
    cfg = v6_cfg("topk", k=k)
    if cfg_value is not None:
        cfg["rescale_acts_by_decoder_norm"] = cfg_value
    sae = load_sae(write_saelens(tmp_path / "sae", w, cfg))

    assert_topk_codes(sae.encode(x), ref_pre(x, w), k, pre_atol(x, w))
    assert not sae.rescale_acts_by_decoder_norm


NORMALIZATION_CASES = [
    ("constant_scalar_rescale", 0.37),
    ("constant_norm_rescale", None),
    ("layer_norm", None),
]


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize(("normalize", "factor"), NORMALIZATION_CASES, ids=lambda v: str(v))
def test_normalize_activations_matches_reference(
    tmp_path, architecture, apply_b_dec, normalize, factor
):
    k = 6
    w = make_weights()
    x = make_x()
    threshold = torch.rand(N_FEATURES, generator=torch.Generator().manual_seed(3))
    extra = {"threshold": threshold} if architecture == "jumprelu" else {}
    cfg = v6_cfg(architecture, normalize_activations=normalize, apply_b_dec_to_input=apply_b_dec)
    if architecture == "topk":
        cfg["k"] = k
    if factor is not None:
        cfg["activation_normalization_factor"] = factor
    sae = load_sae(write_saelens(tmp_path / "sae", w, cfg, **extra))

    codes = sae.encode(x)

    pre = ref_pre(x, w, apply_b_dec=apply_b_dec, normalize=normalize, factor=factor)
    # Normalizing a row is itself a reduction over d_model, ahead of the matmul's.
    atol = pre_atol(ref_normalize_in(x.double(), normalize, factor), w, n_terms=2 * D_MODEL)
    if architecture == "topk":
        assert_topk_codes(codes, pre, k, atol)
    elif architecture == "jumprelu":
        assert ((pre - threshold.double()).abs() > atol).all(), "nothing may sit on a threshold"
        assert_within(codes, ref_jumprelu(pre, threshold), atol)
    else:
        assert_within(codes, pre.clamp(min=0), atol)
    assert_within(
        sae.decode(codes, x=x),
        ref_decode(codes, w, x, normalize=normalize, factor=factor),
        decode_atol(codes, w, x, normalize=normalize, factor=factor),
    )
    assert (sae.normalize_activations, sae.activation_normalization_factor) == (normalize, factor)


@pytest.mark.parametrize("normalize", ["constant_norm_rescale", "layer_norm"])
def test_per_row_normalization_decode_needs_the_activations(tmp_path, normalize):
    folder = write_saelens(
        tmp_path / "sae", make_weights(), v6_cfg(normalize_activations=normalize)
    )
    sae = load_sae(folder)
    x = make_x()
    codes = sae.encode(x)
    with pytest.raises(ValueError, match=rf"normalize_activations='{normalize}'.*x=x"):
        sae.decode(codes)
    with pytest.raises(ValueError, match=r"64 rows of codes but 3 rows of activations"):
        sae.decode(codes, x=x[:3])
    # reconstruction_fvu passes the activations itself.
    assert 0 <= sae.reconstruction_fvu(x) < float("inf")


def test_constant_norm_rescale_refuses_an_all_zero_row(tmp_path):
    folder = write_saelens(
        tmp_path / "sae", make_weights(), v6_cfg(normalize_activations="constant_norm_rescale")
    )
    x = make_x()
    x[5] = 0.0
    with pytest.raises(ValueError, match=r"activation row 5 is all zeros.*constant_norm_rescale"):
        load_sae(folder).encode(x)


@pytest.mark.parametrize("architecture", ["batchtopk", "matryoshka_batchtopk"])
@pytest.mark.parametrize("rescale", [True, False, None], ids=["true", "false", "absent"])
def test_batchtopk_training_checkpoint_is_jumprelu_with_topk_threshold(
    tmp_path, architecture, rescale
):
    """SAELens saves BatchTopK for inference as JumpReLU with threshold = topk_threshold."""
    w = make_weights()
    x = make_x()
    cfg = v6_cfg(architecture, k=6.5, topk_threshold_lr=0.01, aux_loss_coefficient=1.0)
    cfg["decoder_init_norm"] = 0.1
    if architecture == "matryoshka_batchtopk":
        cfg.update(matryoshka_widths=[16, N_FEATURES], use_matryoshka_aux_loss=False)
    if rescale is not None:
        cfg["rescale_acts_by_decoder_norm"] = rescale
    topk_threshold = torch.tensor(1.25, dtype=torch.float64)  # a double buffer in SAELens
    sae = load_sae(write_saelens(tmp_path / "sae", w, cfg, topk_threshold=topk_threshold))

    # TopKTrainingSAEConfig defaults rescale_acts_by_decoder_norm to True.
    effective = True if rescale is None else rescale
    pre = ref_pre(x, w, rescale=effective)
    expected = ref_jumprelu(pre, torch.full((N_FEATURES,), 1.25))
    atol = pre_atol(x, w, rescale=effective)
    assert ((pre - 1.25).abs() > atol).all(), "no pre-activation may sit on the threshold"
    assert (expected > 0).any() and ((pre > 0) & (pre <= 1.25)).any()
    codes = sae.encode(x)
    assert_within(codes, expected, atol)
    assert_within(
        sae.decode(codes),
        ref_decode(codes, w, x, rescale=effective),
        decode_atol(codes, w, x, rescale=effective),
    )
    assert sae.activation == "jumprelu" and sae.rescale_acts_by_decoder_norm is effective


def test_jumprelu_log_threshold_is_exponentiated(tmp_path):
    w = make_weights()
    x = make_x()
    threshold = torch.rand(N_FEATURES, generator=torch.Generator().manual_seed(4)) + 0.1
    folder = write_saelens(tmp_path / "sae", w, v6_cfg("jumprelu"), log_threshold=threshold.log())
    codes = load_sae(folder).encode(x)
    pre, atol = ref_pre(x, w), pre_atol(x, w)
    # exp(log t) is t to a few ulps; nothing here sits that close to a threshold.
    assert ((pre - threshold.double()).abs() > atol + 4 * EPS32 * threshold.double()).all()
    assert_within(codes, ref_jumprelu(pre, threshold), atol)


def test_pre_v6_flat_runner_config_is_honoured(tmp_path):
    """A SAELens <= 5 cfg.json: flat, old key names, boolean normalize_activations."""
    k = 4
    w = make_weights()
    x = make_x()
    cfg = {
        "model_name": "gpt2-small",
        "hook_point": "blocks.8.hook_resid_pre",
        "hook_point_layer": 8,
        "hook_point_head_index": None,
        "dataset_path": "Skylion007/openwebtext",
        "is_dataset_tokenized": False,
        "context_size": 128,
        "d_in": D_MODEL,
        "d_sae": N_FEATURES,
        "expansion_factor": N_FEATURES // D_MODEL,
        "architecture": "standard",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": k},
        "apply_b_dec_to_input": False,
        "normalize_activations": False,
        "finetuning_scaling_factor": False,
        "b_dec_init_method": "geometric_median",
        "l1_coefficient": 8e-5,
        "lp_norm": 1.0,
        "lr": 4e-4,
        "lr_scheduler_name": "constant",
        "train_batch_size": 4096,
        "use_ghost_grads": False,
        "feature_sampling_window": 1000,
        "dead_feature_window": 5000,
        "dead_feature_threshold": 1e-8,
        "log_to_wandb": True,
        "wandb_project": "mats_sae_training_gpt2",
        "n_checkpoints": 10,
        "checkpoint_path": "checkpoints/abc",
        "device": "cuda",
        "seed": 42,
        "dtype": "torch.float32",
        "sae_lens_training_version": "3.1.0",
        "run_name": "24576-L1-8e-05-LR-0.0004-Tokens-3.000e+08",
    }
    sae = load_sae(write_saelens(tmp_path / "sae", w, cfg))

    # With apply_b_dec_to_input false the tolerance's |x| + |b_dec| still bounds |x|.
    assert_topk_codes(sae.encode(x), ref_pre(x, w, apply_b_dec=False), k, pre_atol(x, w))
    assert (sae.activation, sae.k, sae.normalize_activations) == ("topk", k, "none")


def test_ignored_keys_do_not_change_codes(tmp_path):
    """hook_*, provenance, placement and training-only keys are accepted and have no effect."""
    w = make_weights()
    x = make_x()
    bare_cfg = {"d_in": D_MODEL, "architecture": "topk", "k": 5}
    bare = load_sae(write_saelens(tmp_path / "bare", w, bare_cfg))
    noisy_cfg = v6_cfg(
        "topk",
        k=5,
        dtype="bfloat16",
        device="cuda:3",
        reshape_activations="hook_z",
        hook_name="blocks.3.attn.hook_z",
        hook_layer=3,
        hook_head_index=None,
        hf_hook_name="model.layers.3",
        use_sparse_activations=True,
        aux_loss_coefficient=1 / 32,
        decoder_init_norm=0.1,
        l1_coefficient=5.0,
        model_from_pretrained_kwargs={"center_writing_weights": False},
        neuronpedia_id="gpt2-small/3-att-kk",
        seqpos_slice=[1, None],
    )
    noisy = load_sae(write_saelens(tmp_path / "noisy", w, noisy_cfg))
    torch.testing.assert_close(noisy.encode(x), bare.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(
        noisy.decode(noisy.encode(x)), bare.decode(bare.encode(x)), rtol=0, atol=0
    )
    assert noisy.W_enc.dtype == torch.float32 and noisy.W_enc.device.type == "cpu"


def test_finetuning_scaling_factor_scales_codes_before_the_decoder(tmp_path):
    """SAELens <= 5 decoded (codes * scaling_factor) @ W_dec + b_dec; codes are unchanged."""
    w = make_weights()
    x = make_x()
    scale = torch.rand(N_FEATURES, generator=torch.Generator().manual_seed(5)) + 0.5
    cfg = {"d_in": D_MODEL, "d_sae": N_FEATURES, "finetuning_scaling_factor": True}
    sae = load_sae(write_saelens(tmp_path / "sae", w, cfg, scaling_factor=scale))

    codes = sae.encode(x)
    assert_within(codes, ref_pre(x, w).clamp(min=0), pre_atol(x, w))
    expected = (codes.double() * scale.double()) @ w["W_dec"].double() + w["b_dec"].double()
    # Folding the factor into W_dec rounds each product once more than the sum alone.
    scaled = dict(w, W_dec=w["W_dec"] * scale[:, None])
    assert_within(sae.decode(codes), expected, 2 * decode_atol(codes, scaled, x))


def test_all_ones_scaling_factor_is_dropped_even_when_flag_is_false(tmp_path):
    w = make_weights()
    cfg = {"d_in": D_MODEL, "finetuning_scaling_factor": False}
    sae = load_sae(write_saelens(tmp_path / "sae", w, cfg, scaling_factor=torch.ones(N_FEATURES)))
    torch.testing.assert_close(sae.W_dec, w["W_dec"], rtol=0, atol=0)


# ----------------------------------------------------------------------------- round trips


def test_save_round_trips_topk_with_rescale_and_non_unit_decoder(tmp_path):
    w = make_weights()
    x = make_x()
    sae = SAE(**w, format="saelens", activation="topk", k=7, rescale_acts_by_decoder_norm=True)

    folder = save_sae(sae, tmp_path / "sae")

    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["rescale_acts_by_decoder_norm"] is True and cfg["k"] == 7
    loaded = load_sae(folder)
    # Written as is: the stored weights, not normalized copies.
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(loaded, name), getattr(sae, name), rtol=0, atol=0)
    assert loaded.rescale_acts_by_decoder_norm
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(
        loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)), rtol=0, atol=0
    )


@pytest.mark.parametrize("activation", ["jumprelu", "relu"])
def test_save_folds_rescale_for_architectures_without_the_flag(tmp_path, activation):
    """SAELens's JumpReLU/standard configs have no rescale flag: save folds the norms in."""
    w = make_weights()
    w["W_dec"][3] = 0.0  # a dead feature must stay dead, not become NaN
    x = make_x()
    threshold = torch.full((N_FEATURES,), 0.8)
    extra = {"threshold": threshold} if activation == "jumprelu" else {}
    sae = SAE(
        **w, format="saelens", activation=activation, rescale_acts_by_decoder_norm=True, **extra
    )

    folder = save_sae(sae, tmp_path / "sae")

    cfg = json.loads((folder / "cfg.json").read_text())
    assert "rescale_acts_by_decoder_norm" not in cfg
    loaded = load_sae(folder)
    assert not loaded.rescale_acts_by_decoder_norm
    norms = loaded.W_dec.norm(dim=1)
    assert float(norms[3]) == 0.0
    live = torch.arange(N_FEATURES) != 3
    assert_within(norms[live], torch.ones(N_FEATURES - 1), f32_atol(D_MODEL, 1.0))
    pre = ref_pre(x, w, rescale=True)
    # The folded weights round once more than the originals: allow both sides' tolerance.
    atol = 2 * pre_atol(x, w, rescale=True)
    if activation == "jumprelu":
        assert ((pre - 0.8).abs() > atol).all(), "nothing may sit on the threshold"
    expected = ref_jumprelu(pre, threshold) if activation == "jumprelu" else pre.clamp(min=0)
    assert_within(loaded.encode(x), expected, atol)
    assert_within(loaded.encode(x), sae.encode(x), atol)
    codes = sae.encode(x)
    assert_within(
        loaded.decode(codes), sae.decode(codes), 2 * decode_atol(codes, w, x, rescale=True)
    )


@pytest.mark.parametrize(("normalize", "factor"), NORMALIZATION_CASES, ids=lambda v: str(v))
def test_save_round_trips_normalize_activations(tmp_path, normalize, factor):
    w = make_weights()
    x = make_x()
    sae = SAE(
        **w,
        format="saelens",
        activation="relu",
        normalize_activations=normalize,
        activation_normalization_factor=factor,
    )
    loaded = load_sae(save_sae(sae, tmp_path / "sae"))
    assert (loaded.normalize_activations, loaded.activation_normalization_factor) == (
        normalize,
        factor,
    )
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(
        loaded.decode(loaded.encode(x), x=x), sae.decode(sae.encode(x), x=x), rtol=0, atol=0
    )


def test_other_formats_refuse_saelens_only_settings(tmp_path):
    w = make_weights()
    rescaled = SAE(
        **w, format="sparsify", activation="topk", k=3, rescale_acts_by_decoder_norm=True
    )
    with pytest.raises(
        ValueError, match=r"cannot save as 'sparsify'.*rescale_acts_by_decoder_norm"
    ):
        save_sae(rescaled, tmp_path / "a")
    normalized = SAE(
        **w, format="sparsify", activation="topk", k=3, normalize_activations="layer_norm"
    )
    with pytest.raises(ValueError, match=r"cannot save as 'sparsify'.*normalize_activations"):
        save_sae(normalized, tmp_path / "b")


# ----------------------------------------------------------------------------- refused fields


REFUSED_CFGS = [
    pytest.param(
        {"normalize_activations": "expected_average_only_in"},
        r"normalize_activations='expected_average_only_in' is not supported: .*does not store",
        id="expected_average_only_in",
    ),
    pytest.param(
        {"normalize_activations": True},  # pre-v6 boolean for the same thing
        r"normalize_activations='expected_average_only_in'",
        id="pre-v6-normalize-true",
    ),
    pytest.param(
        {"normalize_activations": "covariance_whitening"},
        r"normalize_activations='covariance_whitening' is not supported: .*mean and covariance",
        id="covariance_whitening",
    ),
    pytest.param(
        {"normalize_activations": "zscore"},
        r"normalize_activations='zscore' is not supported: expected one of \('none'",
        id="unknown-normalization",
    ),
    pytest.param(
        {"normalize_activations": "constant_scalar_rescale"},
        r"activation_normalization_factor=None is not supported: .*positive finite",
        id="scalar-rescale-without-factor",
    ),
    pytest.param(
        {"normalize_activations": "constant_scalar_rescale", "activation_normalization_factor": -2},
        r"activation_normalization_factor=-2 is not supported",
        id="scalar-rescale-negative-factor",
    ),
    pytest.param(
        {"activation_normalization_factor": 2.0},
        r"activation_normalization_factor=2\.0 is not supported: .*not 'none'",
        id="factor-without-scalar-rescale",
    ),
    pytest.param(
        {"architecture": "gated"},
        r"architecture='gated' is not supported: .*b_gate.*supported: \('standard'",
        id="gated",
    ),
    pytest.param(
        {"architecture": "abstopk", "k": 4}, r"architecture='abstopk'.*signed", id="abstopk"
    ),
    pytest.param(
        {"architecture": "transcoder", "d_out": 8}, r"architecture='transcoder'", id="transcoder"
    ),
    pytest.param({"architecture": "temporal"}, r"architecture='temporal'", id="temporal"),
    pytest.param(
        {"architecture": "crosscoder"}, r"architecture='crosscoder'.*unknown", id="unknown-arch"
    ),
    pytest.param(
        {"my_new_field": 3, "another": "x"},
        r"unknown SAELens cfg key\(s\) \['another', 'my_new_field'\] \(values .*'my_new_field': 3",
        id="unknown-keys",
    ),
    pytest.param(
        {"rescale_acts_by_decoder_norm": True},
        r"rescale_acts_by_decoder_norm=True is not supported: .*not architecture 'standard'",
        id="rescale-on-standard",
    ),
    pytest.param(
        {"architecture": "topk", "k": 4, "rescale_acts_by_decoder_norm": "yes"},
        r"rescale_acts_by_decoder_norm='yes' is not supported: expected true or false",
        id="rescale-not-bool",
    ),
    pytest.param(
        {"activation_fn_str": "tanh-relu"},
        r"activation_fn_str='tanh-relu' is not supported: .*\('relu',\)",
        id="tanh-relu",
    ),
    pytest.param(
        {"architecture": "topk", "k": 4, "activation_fn_kwargs": {"k": 4, "postact_fn": "relu"}},
        r"activation_fn_kwargs=\{.*'postact_fn'.*at most the key 'k'",
        id="kwargs-extra-key",
    ),
    pytest.param(
        {"architecture": "topk", "k": 4, "activation_fn_kwargs": {"k": 5}},
        r"k=4 is not supported: activation_fn_kwargs says k=5",
        id="k-disagrees",
    ),
    pytest.param(
        {"k": 4}, r"k=4 is not supported: k is only used by architecture 'topk'", id="k-on-standard"
    ),
    pytest.param({"architecture": "topk"}, r"cfg\.json has no 'k'", id="topk-without-k"),
    pytest.param(
        {"reshape_activations": "hook_q"},
        r"reshape_activations='hook_q' is not supported: expected 'none' or 'hook_z'",
        id="reshape",
    ),
    pytest.param(
        {"finetuning_scaling_factor": "maybe"},
        r"finetuning_scaling_factor='maybe' is not supported",
        id="finetuning-not-bool",
    ),
    pytest.param(
        {"d_in": D_MODEL + 1},
        r"inconsistent d_model: .*'cfg d_in': 17",
        id="d_in-mismatch",
    ),
    pytest.param(
        {"d_sae": N_FEATURES * 2},
        r"cfg\.json says d_sae=128, but W_enc .* has 64 features",
        id="d_sae-mismatch",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), REFUSED_CFGS)
def test_refused_cfg_fields_name_the_field(tmp_path, overrides, message):
    cfg = {"d_in": D_MODEL, "d_sae": N_FEATURES, "architecture": "standard", **overrides}
    folder = write_saelens(tmp_path / "sae", make_weights(), cfg)
    with pytest.raises(ValueError, match=message):
        load_sae(folder)


def test_refusals_are_also_not_implemented_errors(tmp_path):
    """Callers written when these were NotImplementedError keep working."""
    folder = write_saelens(tmp_path / "sae", make_weights(), v6_cfg("gated"))
    with pytest.raises(NotImplementedError, match=r"architecture='gated'"):
        load_sae(folder)
    assert issubclass(UnsupportedSAEConfigError, ValueError)


REFUSED_TENSORS = [
    pytest.param(
        "standard",
        {"b_gate": torch.zeros(N_FEATURES)},
        r"holds tensor\(s\) \['b_gate'\] that architecture 'standard' does not use",
        id="gated-tensor-in-standard",
    ),
    pytest.param(
        "jumprelu",
        {"threshold": torch.ones(N_FEATURES), "log_threshold": torch.zeros(N_FEATURES)},
        r"holds both 'threshold' and 'log_threshold'",
        id="two-thresholds",
    ),
    pytest.param(
        "batchtopk",
        {"topk_threshold": torch.ones(3)},
        r"'topk_threshold' has shape \(3,\); expected a scalar",
        id="topk-threshold-not-scalar",
    ),
    pytest.param("batchtopk", {}, r"has no tensor 'threshold'", id="batchtopk-without-threshold"),
    pytest.param(
        "standard",
        {"scaling_factor": torch.full((N_FEATURES,), 2.0)},
        r"finetuning_scaling_factor=False, but .* holds a 'scaling_factor' that is not all ones",
        id="scaling-factor-without-flag",
    ),
]


@pytest.mark.parametrize(("architecture", "tensors", "message"), REFUSED_TENSORS)
def test_refused_tensors_name_the_tensor(tmp_path, architecture, tensors, message):
    folder = write_saelens(tmp_path / "sae", make_weights(), v6_cfg(architecture), **tensors)
    with pytest.raises(ValueError, match=message):
        load_sae(folder)


def test_finetuning_scaling_factor_with_rescale_is_refused(tmp_path):
    cfg = v6_cfg("topk", k=4, rescale_acts_by_decoder_norm=True, finetuning_scaling_factor=True)
    folder = write_saelens(
        tmp_path / "sae", make_weights(), cfg, scaling_factor=torch.full((N_FEATURES,), 2.0)
    )
    with pytest.raises(ValueError, match=r"finetuning_scaling_factor=True together with rescale"):
        load_sae(folder)


def test_sae_constructor_validates_normalization_settings():
    w = make_weights()
    with pytest.raises(ValueError, match=r"unknown normalize_activations 'zscore'"):
        SAE(**w, format="saelens", activation="relu", normalize_activations="zscore")
    with pytest.raises(
        ValueError, match=r"'constant_scalar_rescale' needs a positive finite.*0\.0"
    ):
        SAE(
            **w,
            format="saelens",
            activation="relu",
            normalize_activations="constant_scalar_rescale",
            activation_normalization_factor=0.0,
        )
    with pytest.raises(ValueError, match=r"activation_normalization_factor=2\.0 is only used by"):
        SAE(**w, format="saelens", activation="relu", activation_normalization_factor=2.0)
    with pytest.raises(ValueError, match=r"rescale_acts_by_decoder_norm must be True or False"):
        SAE(**w, format="saelens", activation="relu", rescale_acts_by_decoder_norm=1)
