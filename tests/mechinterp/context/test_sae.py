"""Tests for splatnlp/mechinterp/sae.py: three on-disk formats against numpy references."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import float_tol
from safetensors.torch import save_file

from splatnlp.mechinterp.context.sae import (
    SAE,
    detect_sae_format,
    load_sae,
    save_sae,
    splatnlp_sae,
)

D_MODEL = 8
N_FEATURES = 24
N_EXAMPLES = 16
SEED = 0


# ----------------------------------------------------------------------------- builders


def make_weights(seed: int = SEED, *, d_model: int = D_MODEL, n_features: int = N_FEATURES):
    """Random float32 weights in the canonical orientation: W_enc (d, n), W_dec (n, d)."""
    rng = np.random.default_rng(seed)
    return {
        "W_enc": rng.normal(size=(d_model, n_features)).astype(np.float32),
        "b_enc": rng.normal(scale=0.5, size=n_features).astype(np.float32),
        "W_dec": rng.normal(size=(n_features, d_model)).astype(np.float32),
        "b_dec": rng.normal(scale=0.5, size=d_model).astype(np.float32),
    }


def make_x(seed: int = SEED + 1, *, n: int = N_EXAMPLES, d_model: int = D_MODEL) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d_model)).astype(np.float32)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj))


def write_splatnlp(path: Path, w: dict[str, np.ndarray], **extra: np.ndarray) -> Path:
    """A SplatNLP checkpoint in its documented layout, written without save_sae."""
    state = {
        "encoder.weight": t(w["W_enc"].T),  # (H, D)
        "encoder.bias": t(w["b_enc"]),
        "decoder.weight": t(w["W_dec"].T),  # (D, H)
        "decoder_bias": t(w["b_dec"]),
    }
    state.update({key: t(value) for key, value in extra.items()})
    torch.save(state, path)
    return path


def write_saelens(folder: Path, w: dict[str, np.ndarray], cfg: dict, **extra: np.ndarray) -> Path:
    """A SAELens folder in its documented layout, written without save_sae."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: t(w[key]) for key in ("W_enc", "b_enc", "W_dec", "b_dec")}
    tensors.update({key: t(value) for key, value in extra.items()})
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    write_json(folder / "cfg.json", cfg)
    return folder


def write_sparsify(folder: Path, w: dict[str, np.ndarray], cfg: dict) -> Path:
    """A sparsify folder in its documented layout, written without save_sae."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "encoder.weight": t(w["W_enc"].T),  # (L, d_in)
        "encoder.bias": t(w["b_enc"]),
        "W_dec": t(w["W_dec"]),  # (L, d_in)
        "b_dec": t(w["b_dec"]),
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    write_json(folder / "cfg.json", cfg)
    return folder


def saelens_cfg(**overrides) -> dict:
    cfg = {"d_in": D_MODEL, "d_sae": N_FEATURES, "architecture": "standard"}
    cfg.update(overrides)
    return cfg


def sparsify_cfg(**overrides) -> dict:
    cfg = {"k": 5, "num_latents": N_FEATURES, "expansion_factor": 3, "d_in": D_MODEL}
    cfg.update(overrides)
    return cfg


# ----------------------------------------------------------------------------- numpy references


def ref_pre(x, w, *, apply_b_dec: bool = True) -> np.ndarray:
    x = x.astype(np.float64)
    if apply_b_dec:
        x = x - w["b_dec"]
    return x @ w["W_enc"].astype(np.float64) + w["b_enc"]


def ref_relu(pre: np.ndarray) -> np.ndarray:
    return np.where(pre > 0, pre, 0.0)


def ref_topk(pre: np.ndarray, k: int) -> np.ndarray:
    acts = ref_relu(pre)
    out = np.zeros_like(acts)
    for row in range(acts.shape[0]):
        keep = np.argsort(-acts[row], kind="stable")[:k]
        out[row, keep] = acts[row, keep]
    return out


def ref_jumprelu(pre: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    return ref_relu(pre) * (pre > threshold)


def pre_scale(x, w, *, apply_b_dec: bool = True) -> float:
    """The largest sum of term magnitudes of one pre-activation, ``|x - b_dec| @ |W_enc| +
    |b_enc|``: the scale of its float32 rounding (a reduction over d_model terms)."""
    x = np.abs(np.asarray(x, np.float64) - (w["b_dec"] if apply_b_dec else 0.0))
    return float((x @ np.abs(np.asarray(w["W_enc"], np.float64)) + np.abs(w["b_enc"])).max())


def decode_scale(x, w, active: np.ndarray) -> float:
    """The largest sum of term magnitudes of one reconstruction, carried through both products:
    the active codes' pre-activation terms times ``|W_dec|``, plus ``|b_dec|`` (an inactive code
    is an exact zero and carries no rounding)."""
    x = np.abs(np.asarray(x, np.float64) - w["b_dec"])
    pre_terms = x @ np.abs(np.asarray(w["W_enc"], np.float64)) + np.abs(w["b_enc"])
    return float(((pre_terms * active) @ np.abs(w["W_dec"]) + np.abs(w["b_dec"])).max())


def codes_tol(x, w, *, apply_b_dec: bool = True) -> float:
    """float_tol of float32 codes: the encoder product over d_model, at the scale above."""
    return float_tol(np.float32, len(w["W_enc"]), pre_scale(x, w, apply_b_dec=apply_b_dec))


def assert_codes(
    actual: torch.Tensor, expected: np.ndarray, x, w, *, apply_b_dec: bool = True
) -> None:
    """float32 codes of ``x`` under weights ``w`` against a float64 reference."""
    assert actual.dtype == torch.float32
    atol = codes_tol(x, w, apply_b_dec=apply_b_dec)
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=atol)


# ----------------------------------------------------------------------------- splatnlp


def test_splatnlp_handwritten_checkpoint_matches_reference_and_clamps_at_6(tmp_path):
    w = make_weights()
    w["W_enc"][:, :4] *= 20.0  # large enough that these features exceed the clamp
    path = write_splatnlp(tmp_path / "sae.pt", w)
    x = make_x()

    sae = load_sae(path)
    codes = sae.encode(t(x))

    pre = ref_pre(x, w)
    assert pre.max() > 6.5, "test data should push some codes past the clamp"
    assert_codes(codes, np.clip(ref_relu(pre), 0.0, 6.0), x, w)
    assert (codes == 6.0).any()
    assert sae.format == "splatnlp" and sae.clamp_max == 6.0 and sae.normalize_decoder
    assert sae.source == str(path)
    assert sae.W_enc.dtype == torch.float32 and sae.W_enc.device.type == "cpu"


def test_splatnlp_decode_uses_unit_norm_decoder_columns(tmp_path):
    w = make_weights()
    w["W_dec"] *= 3.0  # stored rows far from unit norm, so normalization is visible
    sae = load_sae(write_splatnlp(tmp_path / "sae.pt", w))
    codes = np.abs(make_x(seed=5, n=6, d_model=N_FEATURES))

    x_hat = sae.decode(t(codes))

    decoder_weight = w["W_dec"].T.astype(np.float64)  # (D, H) as SplatNLP stores it
    unit_columns = decoder_weight / np.linalg.norm(decoder_weight, axis=0, keepdims=True)
    # float32: decoder rows normalized over d_model, then the decode over n_features.
    scale = float((np.abs(codes) @ np.abs(unit_columns.T) + np.abs(w["b_dec"])).max())
    np.testing.assert_allclose(
        x_hat.numpy(),
        codes @ unit_columns.T + w["b_dec"],
        rtol=0,
        atol=float_tol(np.float32, D_MODEL + N_FEATURES, scale),
    )
    # The stored decoder itself is kept unnormalized.
    np.testing.assert_allclose(sae.W_dec.numpy(), w["W_dec"])


def test_splatnlp_save_writes_documented_keys_and_round_trips_usage_ema(tmp_path):
    w = make_weights()
    usage = np.random.default_rng(3).uniform(size=N_FEATURES).astype(np.float32)
    sae = splatnlp_sae(
        t(w["W_enc"]), t(w["b_enc"]), t(w["W_dec"]), t(w["b_dec"]), usage_ema=t(usage)
    )

    path = save_sae(sae, tmp_path / "out.pt")

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {
        "encoder.weight",
        "encoder.bias",
        "decoder.weight",
        "decoder_bias",
        "usage_ema",
    }
    assert tuple(raw["encoder.weight"].shape) == (N_FEATURES, D_MODEL)
    assert tuple(raw["decoder.weight"].shape) == (D_MODEL, N_FEATURES)
    loaded = load_sae(path)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "usage_ema"):
        torch.testing.assert_close(getattr(loaded, name), getattr(sae, name))
    x = t(make_x())
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=codes_tol(x, w))


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict"])
def test_splatnlp_wrapped_state_dict_is_accepted(tmp_path, wrapper):
    w = make_weights()
    inner = tmp_path / "inner.pt"
    write_splatnlp(inner, w)
    path = tmp_path / "wrapped.pt"
    torch.save({wrapper: torch.load(inner, weights_only=True), "epoch": 3}, path)

    sae = load_sae(path)

    x = make_x()
    assert_codes(sae.encode(t(x)), np.clip(ref_relu(ref_pre(x, w)), 0, 6), x, w)


def test_splatnlp_folder_with_one_checkpoint(tmp_path):
    w = make_weights()
    sae = splatnlp_sae(t(w["W_enc"]), t(w["b_enc"]), t(w["W_dec"]), t(w["b_dec"]))
    folder = tmp_path / "ckpt"
    folder.mkdir()

    path = save_sae(sae, folder)

    assert path == folder / "sae.pt"
    assert detect_sae_format(folder) == "splatnlp"
    loaded = load_sae(folder)
    torch.testing.assert_close(loaded.W_enc, sae.W_enc)
    assert loaded.source == str(path)


def test_square_matrices_keep_documented_layout(tmp_path):
    w = make_weights(d_model=D_MODEL, n_features=D_MODEL)
    sae = load_sae(write_splatnlp(tmp_path / "square.pt", w))
    # encoder.weight is (H, D) by convention, so W_enc must be its transpose, not itself.
    np.testing.assert_allclose(sae.W_enc.numpy(), w["W_enc"])
    np.testing.assert_allclose(sae.W_dec.numpy(), w["W_dec"])


def test_splatnlp_transposed_matrices_are_reoriented(tmp_path):
    w = make_weights()
    path = tmp_path / "transposed.pt"
    torch.save(
        {
            "encoder.weight": t(w["W_enc"]),  # stored (D, H) instead of (H, D)
            "encoder.bias": t(w["b_enc"]),
            "decoder.weight": t(w["W_dec"]),  # stored (H, D) instead of (D, H)
            "decoder_bias": t(w["b_dec"]),
        },
        path,
    )
    sae = load_sae(path)
    x = make_x()
    assert_codes(sae.encode(t(x)), np.clip(ref_relu(ref_pre(x, w)), 0, 6), x, w)
    np.testing.assert_allclose(sae.W_dec.numpy(), w["W_dec"])


# ----------------------------------------------------------------------------- saelens


@pytest.mark.parametrize(
    "cfg",
    [
        {"d_in": D_MODEL, "d_sae": N_FEATURES},  # older SAELens: no architecture key
        saelens_cfg(normalize_activations="none", metadata={"model_name": "x"}),  # v6-style
    ],
    ids=["legacy", "v6"],
)
def test_saelens_standard_handwritten_matches_reference(tmp_path, cfg):
    w = make_weights()
    folder = write_saelens(tmp_path / "sae", w, cfg)
    x = make_x()

    sae = load_sae(folder)

    assert sae.format == "saelens" and sae.activation == "relu" and not sae.normalize_decoder
    assert sae.clamp_max is None
    assert_codes(sae.encode(t(x)), ref_relu(ref_pre(x, w)), x, w)
    # float32: the encoder product over d_model, then the decoder's over n_features.
    scale = decode_scale(x, w, ref_relu(ref_pre(x, w)) > 0)
    np.testing.assert_allclose(
        sae.decode(sae.encode(t(x))).numpy(),
        ref_relu(ref_pre(x, w)) @ w["W_dec"] + w["b_dec"],
        rtol=0,
        atol=float_tol(np.float32, D_MODEL + N_FEATURES, scale),
    )


def test_saelens_apply_b_dec_to_input_false(tmp_path):
    w = make_weights()
    folder = write_saelens(tmp_path / "sae", w, saelens_cfg(apply_b_dec_to_input=False))
    x = make_x()
    assert_codes(
        load_sae(folder).encode(t(x)),
        ref_relu(ref_pre(x, w, apply_b_dec=False)),
        x,
        w,
        apply_b_dec=False,
    )


def test_saelens_jumprelu_matches_reference(tmp_path):
    w = make_weights()
    threshold = np.random.default_rng(7).uniform(0.0, 1.5, size=N_FEATURES).astype(np.float32)
    threshold[0] = -0.5  # SAELens still zeroes negative pre-activations below a negative threshold
    folder = write_saelens(
        tmp_path / "sae", w, saelens_cfg(architecture="jumprelu"), threshold=threshold
    )
    x = make_x()

    codes = load_sae(folder).encode(t(x))

    pre = ref_pre(x, w)
    expected = ref_jumprelu(pre, threshold)
    assert ((pre > 0) & (pre <= threshold) & (threshold > 0)).any(), (
        "threshold should gate something"
    )
    assert_codes(codes, expected, x, w)
    assert (codes >= 0).all()


@pytest.mark.parametrize(
    "k_cfg",
    [
        {"architecture": "topk", "k": 4},
        {"architecture": "topk", "activation_fn_kwargs": {"k": 4}},
        {"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}},
    ],
    ids=["v6-k", "kwargs-k", "legacy-activation-fn"],
)
def test_saelens_topk_matches_reference(tmp_path, k_cfg):
    w = make_weights()
    folder = write_saelens(tmp_path / "sae", w, saelens_cfg(**k_cfg))
    x = make_x()

    sae = load_sae(folder)
    codes = sae.encode(t(x))

    assert sae.activation == "topk" and sae.k == 4
    assert_codes(codes, ref_topk(ref_pre(x, w), 4), x, w)
    assert ((codes > 0).sum(dim=1) <= 4).all()


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_saelens_save_load_round_trip(tmp_path, activation):
    w = make_weights()
    extra = {}
    if activation == "jumprelu":
        extra["threshold"] = t(np.full(N_FEATURES, 0.3, dtype=np.float32))
    if activation == "topk":
        extra["k"] = 6
    sae = SAE(
        **{key: t(value) for key, value in w.items()},
        format="saelens",
        activation=activation,
        apply_b_dec_to_input=False,
        **extra,
    )

    folder = save_sae(sae, tmp_path / "sae")

    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    assert detect_sae_format(folder) == "saelens"
    loaded = load_sae(folder)
    assert (loaded.activation, loaded.k, loaded.apply_b_dec_to_input) == (activation, sae.k, False)
    x = t(make_x())
    atol = codes_tol(x, w, apply_b_dec=False)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=atol)


def test_saelens_transposed_storage_is_reoriented(tmp_path):
    w = make_weights()
    stored = dict(w, W_enc=w["W_enc"].T, W_dec=w["W_dec"].T)  # (d_sae, d_in) and (d_in, d_sae)
    folder = write_saelens(tmp_path / "sae", stored, saelens_cfg())
    x = make_x()

    sae = load_sae(folder)

    assert tuple(sae.W_enc.shape) == (D_MODEL, N_FEATURES)
    assert tuple(sae.W_dec.shape) == (N_FEATURES, D_MODEL)
    assert_codes(sae.encode(t(x)), ref_relu(ref_pre(x, w)), x, w)


def test_matrix_with_no_d_model_axis_raises(tmp_path):
    w = make_weights()
    bad = dict(w, W_enc=np.zeros((N_FEATURES, D_MODEL - 1), dtype=np.float32))
    folder = write_saelens(tmp_path / "sae", bad, saelens_cfg())
    with pytest.raises(
        ValueError, match=r"sae_weights\.safetensors: 'W_enc' has shape \(24, 7\).*d_model 8"
    ):
        load_sae(folder)


# ----------------------------------------------------------------------------- sparsify


def test_sparsify_handwritten_matches_reference(tmp_path):
    w = make_weights()
    folder = write_sparsify(tmp_path / "sae", w, sparsify_cfg(k=5))
    x = make_x()

    sae = load_sae(folder)
    codes = sae.encode(t(x))

    assert sae.format == "sparsify" and sae.activation == "topk" and sae.k == 5
    assert_codes(codes, ref_topk(ref_pre(x, w), 5), x, w)
    assert ((codes > 0).sum(dim=1) <= 5).all()


def test_sparsify_size_from_expansion_factor_without_d_in(tmp_path):
    w = make_weights()
    cfg = {"k": 3, "num_latents": 0, "expansion_factor": N_FEATURES // D_MODEL}
    sae = load_sae(write_sparsify(tmp_path / "sae", w, cfg))
    assert (sae.d_model, sae.n_features, sae.k) == (D_MODEL, N_FEATURES, 3)


def test_sparsify_transcoder_does_not_subtract_b_dec(tmp_path):
    w = make_weights()
    x = make_x()
    sae = load_sae(write_sparsify(tmp_path / "sae", w, sparsify_cfg(k=5, transcode=True)))
    assert_codes(
        sae.encode(t(x)), ref_topk(ref_pre(x, w, apply_b_dec=False), 5), x, w, apply_b_dec=False
    )


def test_sparsify_save_load_round_trip(tmp_path):
    w = make_weights()
    sae = SAE(
        **{key: t(value) for key, value in w.items()}, format="sparsify", activation="topk", k=7
    )

    folder = save_sae(sae, tmp_path / "sae")

    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae.safetensors"]
    cfg = json.loads((folder / "cfg.json").read_text())
    assert (cfg["k"], cfg["num_latents"], cfg["d_in"]) == (7, N_FEATURES, D_MODEL)
    loaded = load_sae(folder)
    x = t(make_x())
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=codes_tol(x, w))
    torch.testing.assert_close(loaded.W_dec, sae.W_dec)


def test_sparsify_latent_count_mismatch_raises(tmp_path):
    folder = write_sparsify(tmp_path / "sae", make_weights(), sparsify_cfg(num_latents=32))
    with pytest.raises(ValueError, match=r"cfg\.json implies 32 latents.*has 24"):
        load_sae(folder)


def test_sparsify_missing_k_raises(tmp_path):
    cfg = sparsify_cfg()
    del cfg["k"]
    folder = write_sparsify(tmp_path / "sae", make_weights(), cfg)
    with pytest.raises(ValueError, match=r"cfg\.json has no 'k'"):
        load_sae(folder)


def test_sparsify_skip_connection_not_implemented(tmp_path):
    folder = write_sparsify(tmp_path / "sae", make_weights(), sparsify_cfg(skip_connection=True))
    with pytest.raises(NotImplementedError, match="skip_connection"):
        load_sae(folder)


# ----------------------------------------------------------------------------- detection


def test_detect_sae_format_on_each_layout(tmp_path):
    w = make_weights()
    assert detect_sae_format(write_splatnlp(tmp_path / "a.pt", w)) == "splatnlp"
    assert detect_sae_format(write_saelens(tmp_path / "lens", w, saelens_cfg())) == "saelens"
    assert detect_sae_format(write_sparsify(tmp_path / "sparse", w, sparsify_cfg())) == "sparsify"
    assert detect_sae_format(str(tmp_path / "a.pt")) == "splatnlp"


def test_detect_sae_format_rejects_bogus_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(tmp_path))}.*notes\.txt.*sae_weights\.safetensors"
    ):
        detect_sae_format(tmp_path)


def test_detect_sae_format_rejects_two_checkpoints(tmp_path):
    w = make_weights()
    write_splatnlp(tmp_path / "a.pt", w)
    write_splatnlp(tmp_path / "b.pt", w)
    with pytest.raises(ValueError, match=r"a\.pt.*b\.pt.*exactly one"):
        detect_sae_format(tmp_path)
    with pytest.raises(ValueError, match=r"exactly one.*'a\.pt', 'b\.pt'"):
        load_sae(tmp_path, format="splatnlp")


def test_detect_sae_format_rejects_unknown_file(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"weights\.npz.*\*\.pt"):
        detect_sae_format(path)


# ----------------------------------------------------------------------------- bad inputs


def test_missing_path_raises(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*does not exist"):
        load_sae(missing)
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*does not exist"):
        detect_sae_format(missing)


def test_unknown_format_string_raises(tmp_path):
    path = write_splatnlp(tmp_path / "a.pt", make_weights())
    with pytest.raises(ValueError, match=r"unknown SAE format 'torch'.*splatnlp"):
        load_sae(path, format="torch")
    with pytest.raises(ValueError, match=r"unknown SAE format 'torch'"):
        SAE(**{k: t(v) for k, v in make_weights().items()}, format="torch", activation="relu")


def test_missing_key_names_key_file_and_found_keys(tmp_path):
    w = make_weights()
    path = tmp_path / "a.pt"
    torch.save({"encoder.weight": t(w["W_enc"].T), "encoder.bias": t(w["b_enc"])}, path)
    with pytest.raises(
        ValueError,
        match=r"a\.pt has no tensor 'decoder\.weight'; found keys \['encoder\.bias', 'encoder\.weight'\]",
    ):
        load_sae(path)


def test_saelens_missing_threshold_raises(tmp_path):
    folder = write_saelens(tmp_path / "sae", make_weights(), saelens_cfg(architecture="jumprelu"))
    with pytest.raises(ValueError, match=r"sae_weights\.safetensors has no tensor 'threshold'"):
        load_sae(folder)


def test_missing_cfg_raises(tmp_path):
    folder = write_saelens(tmp_path / "sae", make_weights(), saelens_cfg())
    (folder / "cfg.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"sae has no cfg\.json"):
        load_sae(folder)


def test_corrupt_checkpoint_raises(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match=r"could not read SplatNLP checkpoint .*broken\.pt"):
        load_sae(path)


def test_checkpoint_that_is_not_a_dict_raises(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=r"tensor\.pt holds a Tensor; expected a state dict"):
        load_sae(path)


def test_corrupt_safetensors_raises(tmp_path):
    folder = write_saelens(tmp_path / "sae", make_weights(), saelens_cfg())
    (folder / "sae_weights.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(
        ValueError, match=r"could not read safetensors file .*sae_weights\.safetensors"
    ):
        load_sae(folder)


def test_corrupt_cfg_raises(tmp_path):
    folder = write_sparsify(tmp_path / "sae", make_weights(), sparsify_cfg())
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"could not read SAE config .*cfg\.json as JSON"):
        load_sae(folder)


def test_mismatched_shapes_raise_naming_file(tmp_path):
    w = make_weights()
    w["b_enc"] = w["b_enc"][:20]
    path = write_splatnlp(tmp_path / "a.pt", w)
    with pytest.raises(
        ValueError, match=r"a\.pt: b_enc has shape \(20,\), but W_enc .* implies \(24,\)"
    ):
        load_sae(path)


def test_cfg_d_sae_mismatch_raises(tmp_path):
    folder = write_saelens(tmp_path / "sae", make_weights(), saelens_cfg(d_sae=30))
    with pytest.raises(ValueError, match=r"cfg\.json says d_sae=30, but W_enc .* has 24"):
        load_sae(folder)


def test_d_model_argument_mismatch_raises(tmp_path):
    path = write_splatnlp(tmp_path / "a.pt", make_weights())
    with pytest.raises(ValueError, match=r"a\.pt: inconsistent d_model: .*'d_model argument': 10"):
        load_sae(path, d_model=10)
    assert load_sae(path, d_model=D_MODEL).d_model == D_MODEL


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_raise(tmp_path, bad):
    w = make_weights()
    w["W_dec"][3, 2] = bad
    path = write_splatnlp(tmp_path / "a.pt", w)
    with pytest.raises(ValueError, match=r"a\.pt: W_dec has 1 NaN/inf value\(s\)"):
        load_sae(path)


def test_saelens_normalize_activations_not_implemented(tmp_path):
    cfg = saelens_cfg(normalize_activations="expected_average_only_in")
    folder = write_saelens(tmp_path / "sae", make_weights(), cfg)
    with pytest.raises(
        NotImplementedError, match="normalize_activations='expected_average_only_in'"
    ):
        load_sae(folder)


def test_saelens_unknown_architecture_not_implemented(tmp_path):
    folder = write_saelens(tmp_path / "sae", make_weights(), saelens_cfg(architecture="gated"))
    with pytest.raises(NotImplementedError, match="architecture='gated'"):
        load_sae(folder)


def test_encode_rejects_wrong_width():
    sae = splatnlp_sae(*(t(v) for v in make_weights().values()))
    with pytest.raises(ValueError, match=r"^activations have d_model 7, but the SAE expects 8$"):
        sae.encode(torch.zeros(3, 7))


@pytest.mark.parametrize("shape", [(D_MODEL,), (2, 3, D_MODEL)])
def test_encode_rejects_non_2d_input(shape):
    sae = splatnlp_sae(*(t(v) for v in make_weights().values()))
    with pytest.raises(
        ValueError, match=rf"activations must be 2-D .*got shape {re.escape(str(shape))}"
    ):
        sae.encode(torch.zeros(shape))


def test_decode_rejects_wrong_width():
    sae = splatnlp_sae(*(t(v) for v in make_weights().values()))
    with pytest.raises(ValueError, match=r"codes have n_features 5, but the SAE has 24"):
        sae.decode(torch.zeros(2, 5))


def test_sae_constructor_validates_settings():
    w = {k: t(v) for k, v in make_weights().items()}
    with pytest.raises(ValueError, match=r"topk' needs an integer k in 1\.\.24; got k=None"):
        SAE(**w, format="sparsify", activation="topk")
    with pytest.raises(ValueError, match=r"topk' needs an integer k in 1\.\.24; got k=25"):
        SAE(**w, format="sparsify", activation="topk", k=25)
    with pytest.raises(ValueError, match=r"jumprelu' needs a threshold"):
        SAE(**w, format="saelens", activation="jumprelu")
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'"):
        SAE(**w, format="saelens", activation="gelu")


def test_save_refuses_settings_the_format_cannot_express(tmp_path):
    w = {k: t(v) for k, v in make_weights().items()}
    topk = SAE(**w, format="sparsify", activation="topk", k=3)
    with pytest.raises(ValueError, match=r"cannot save as 'splatnlp'.*activation='relu'.*'topk'"):
        save_sae(dataclasses.replace(topk, format="splatnlp"), tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"one \.pt/\.pth file .*got .*a\.bin"):
        save_sae(splatnlp_sae(**w), tmp_path / "a.bin")


# ----------------------------------------------------------------------------- behaviour


def test_decoder_directions_unit_norm_and_zero_rows_stay_zero():
    w = {k: t(v) for k, v in make_weights().items()}
    w["W_dec"][5] = 0.0
    sae = splatnlp_sae(**w)

    directions = sae.decoder_directions(normalized=True)

    norms = directions.norm(dim=1)
    assert torch.isfinite(directions).all()
    torch.testing.assert_close(norms[5], torch.tensor(0.0))
    live = torch.arange(N_FEATURES) != 5
    # float32 unit rows and their norms, each a reduction over d_model.
    unit_tol = float_tol(torch.float32, D_MODEL)
    torch.testing.assert_close(norms[live], torch.ones(N_FEATURES - 1), rtol=0, atol=unit_tol)
    torch.testing.assert_close(sae.decoder_directions(normalized=False), w["W_dec"])
    # A dead feature decodes to nothing rather than NaN.
    assert torch.isfinite(sae.decode(torch.ones(2, N_FEATURES))).all()


def test_reconstruction_fvu_perfect_and_zero_decoder():
    eye = torch.eye(D_MODEL)
    # relu(x) - relu(-x) = x: a lossless SAE with features +e_i and -e_i.
    perfect = SAE(
        W_enc=torch.cat([eye, -eye], dim=1),
        b_enc=torch.zeros(2 * D_MODEL),
        W_dec=torch.cat([eye, -eye], dim=0),
        b_dec=torch.zeros(D_MODEL),
        format="saelens",
        activation="relu",
    )
    x = t(make_x(n=64))
    assert perfect.reconstruction_fvu(x) == pytest.approx(0.0, abs=1e-10)

    # A zero decoder reconstructs every row as b_dec; with b_dec at the mean that is FVU 1.
    blind = dataclasses.replace(
        perfect, W_dec=torch.zeros(2 * D_MODEL, D_MODEL), b_dec=x.mean(dim=0)
    )
    # float64 sums; b_dec, a float32 mean, moves the FVU by O(eps32^2) only.
    assert blind.reconstruction_fvu(x) == pytest.approx(1.0, rel=1e-6)

    with pytest.raises(ValueError, match=r"shape \(1, 8\) have zero variance"):
        perfect.reconstruction_fvu(x[:1])


def test_encode_chunks_and_dtypes_agree():
    w = make_weights()
    sae = splatnlp_sae(*(t(v) for v in w.values()))
    x = t(make_x(n=40))
    whole = sae.encode(x)
    # float32 products of 7 rows may take another BLAS kernel than those of 40.
    atol = codes_tol(x, w)
    chunks = torch.cat([sae.encode(chunk) for chunk in x.split(7)])
    torch.testing.assert_close(chunks, whole, rtol=0, atol=atol)
    assert sae.encode(x.double()).dtype == torch.float32
    torch.testing.assert_close(sae.encode(x.double()), whole, rtol=0, atol=atol)


def test_to_returns_a_copy():
    sae = splatnlp_sae(*(t(v) for v in make_weights().values()))
    moved = sae.to("cpu")
    assert moved is not sae and moved.W_enc.device.type == "cpu"
    torch.testing.assert_close(moved.W_enc, sae.W_enc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_encode_runs_on_the_input_device():
    w = make_weights()
    sae = SAE(**{k: t(v) for k, v in w.items()}, format="sparsify", activation="topk", k=5)
    x = t(make_x())
    codes = sae.encode(x.cuda())
    assert codes.device.type == "cuda"
    torch.testing.assert_close(codes.cpu(), sae.encode(x), rtol=0, atol=codes_tol(x, w))
    assert sae.W_enc.device.type == "cpu"
    # float32: the encoder product over d_model, then the decoder's over n_features.
    scale = decode_scale(x, w, (sae.encode(x) > 0).numpy())
    torch.testing.assert_close(
        sae.decode(codes).cpu(),
        sae.decode(sae.encode(x)),
        rtol=0,
        atol=float_tol(torch.float32, D_MODEL + N_FEATURES, scale),
    )
