"""Tests of splatnlp/mechinterp/context.py: building, loading, resolving and refusing contexts."""

from __future__ import annotations

import gc
import os
import resource
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from helpers import (
    float_tol,
    random_codes,
    random_examples,
    random_records,
    random_sae,
    small_vocabs,
)

from splatnlp.mechinterp.context import (
    MechInterpContext,
    build_context,
    list_contexts,
    load_context,
    read_manifest,
    resolve_context,
)
from splatnlp.mechinterp.context import build as context_module
from splatnlp.mechinterp.context.codes import write_codes as real_write_codes
from splatnlp.mechinterp.context.examples import ExampleSet
from splatnlp.mechinterp.context.manifest import MANIFEST, SCHEMA_VERSION
from splatnlp.mechinterp.context.sae import SAE, save_sae
from splatnlp.mechinterp.context.stats import compute_feature_stats

N_EXAMPLES, D_MODEL, N_FEATURES = 200, 16, 40


def _inputs(seed: int = 0) -> tuple[SAE, ExampleSet, np.ndarray]:
    rng = np.random.default_rng(seed)
    examples = random_examples(rng, N_EXAMPLES)
    activations = rng.standard_normal((N_EXAMPLES, D_MODEL)).astype(np.float32)
    return random_sae(seed, d_model=D_MODEL, n_features=N_FEATURES), examples, activations


def _torch_codes(sae: SAE, activations: np.ndarray) -> np.ndarray:
    """SplatNLP's encoder written out: clamp(relu((x - b_dec) @ W_enc + b_enc), max=6)."""
    x = torch.from_numpy(activations)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    return torch.relu(pre).clamp(max=6.0).numpy()


def _codes_tol(sae: SAE, activations: np.ndarray) -> float:
    """float_tol of float32 codes: the encoder product over d_model, at the scale of its terms
    (the largest ``|x - b_dec| @ |W_enc| + |b_enc|``)."""
    x = np.abs(activations.astype(np.float64) - sae.b_dec.numpy())
    terms = x @ np.abs(sae.W_enc.numpy().astype(np.float64)) + np.abs(sae.b_enc.numpy())
    return float_tol(np.float32, sae.d_model, float(terms.max()))


def _fvu_rtol(rows_per_chunk: int) -> float:
    """float_tol of an FVU whose squared residuals are summed in float32 over a chunk of rows
    (rows x d_model non-negative terms, chunks summed in float64): relative."""
    return float_tol(np.float32, rows_per_chunk * D_MODEL)


def _fvu(sae: SAE, activations: np.ndarray) -> float:
    x = activations.astype(np.float64)
    codes = _torch_codes(sae, activations).astype(np.float64)
    w_dec = sae.W_dec.numpy().astype(np.float64)
    x_hat = codes @ (w_dec / np.linalg.norm(w_dec, axis=1, keepdims=True)) + sae.b_dec.numpy()
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SAE, ExampleSet, np.ndarray]:
    """One context built from activations, shared by the read-only tests of this module."""
    sae, examples, activations = _inputs(0)
    out = tmp_path_factory.mktemp("ctx") / "ultra"
    build_context(
        out,
        sae=sae,
        examples=examples,
        activations=activations,
        source="unit test",
        provenance={"purpose": "testing"},
        n_top_examples=5,
        progress=False,
    )
    return out, sae, examples, activations


@pytest.fixture
def ctx_copy(built, tmp_path: Path) -> Path:
    """A private copy of the built context that a test may damage."""
    return Path(shutil.copytree(built[0], tmp_path / "copy" / "ultra"))


# -- building and loading ----------------------------------------------------------------------
def test_build_from_activations_round_trip(built) -> None:
    path, sae, examples, activations = built
    ctx = load_context(path)
    assert isinstance(ctx, MechInterpContext)
    assert (ctx.name, ctx.model_type) == ("ultra", "ultra")  # both default to the folder name
    assert (ctx.n_features, ctx.d_model, ctx.n_examples) == (N_FEATURES, D_MODEL, N_EXAMPLES)

    expected = _torch_codes(sae, activations)
    assert 0.2 < np.mean(expected > 0) < 0.6  # the test data exercises both zero and active codes
    atol = _codes_tol(sae, activations)
    np.testing.assert_allclose(ctx.codes.csr.toarray(), expected, rtol=0, atol=atol)
    np.testing.assert_allclose(ctx.codes.csc.toarray(), expected, rtol=0, atol=atol)

    assert ctx.vocab == examples.vocab and ctx.weapon_vocab == examples.weapon_vocab
    assert [ctx.examples.record(i) for i in range(N_EXAMPLES)] == [
        examples.record(i) for i in range(N_EXAMPLES)
    ]
    assert ctx.fingerprint == examples.fingerprint == ctx.examples.fingerprint
    assert ctx.token_names == examples.token_names()

    m = ctx.manifest
    assert m.schema_version == SCHEMA_VERSION
    assert m.sae.format == "splatnlp" and (path / m.sae.path).is_file()
    assert m.codes.nnz == np.count_nonzero(ctx.codes.csr.toarray())
    assert m.codes.mean_active_per_example == pytest.approx(m.codes.nnz / N_EXAMPLES)
    assert m.n_top_examples == 5 and ctx.stats.top_examples.shape == (N_FEATURES, 5)
    prov = m.provenance
    assert prov.codes_from == "activations" and prov.source == "unit test"
    assert prov.model_extra == {"purpose": "testing"}
    assert prov.fvu_examples == N_EXAMPLES
    rel = _fvu_rtol(N_EXAMPLES)  # one chunk (the default chunk size exceeds N_EXAMPLES)
    assert prov.reconstruction_fvu == pytest.approx(_fvu(sae, activations), rel=rel)
    assert prov.reconstruction_fvu == pytest.approx(
        sae.reconstruction_fvu(torch.from_numpy(activations)), rel=rel
    )

    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(ctx.sae, name), getattr(sae, name), rtol=0, atol=0)
    stats = compute_feature_stats(
        sp.csc_matrix(ctx.codes.csc.toarray()), examples.token_matrix(), n_top_examples=5
    )
    np.testing.assert_array_equal(ctx.stats.top_examples, stats.top_examples)
    # float32 sums of non-negative codes over the examples: relative.
    np.testing.assert_allclose(
        ctx.stats.token_activation, stats.token_activation, rtol=float_tol(np.float32, N_EXAMPLES)
    )
    ctx.verify()


def test_summary(built) -> None:
    path, *_ = built
    ctx = load_context(path)
    summary = ctx.summary()
    assert summary.n_features == N_FEATURES and summary.fingerprint == ctx.fingerprint
    assert summary.n_dead_features == int((ctx.stats.frequency == 0).sum())
    assert summary.size_bytes == sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary
    assert "ultra" in summary.to_text() and "recon. FVU" in summary.to_text()


def test_chunked_encoding_equals_one_chunk(built, tmp_path: Path) -> None:
    path, sae, examples, activations = built
    one = build_context(
        tmp_path / "one",
        sae=sae,
        examples=examples,
        activations=activations,
        chunk_size=10_000,
        progress=False,
    )
    chunked = load_context(path)  # built with the default chunk size
    small = build_context(
        tmp_path / "seven",
        sae=sae,
        examples=examples,
        activations=activations,
        chunk_size=7,
        progress=False,
    )
    for ctx in (chunked, small):
        # float32 products of 7 rows may take another BLAS kernel than those of all 200.
        np.testing.assert_allclose(
            ctx.codes.csr.toarray(),
            one.codes.csr.toarray(),
            rtol=0,
            atol=_codes_tol(sae, activations),
        )
        assert ctx.manifest.codes.nnz == one.manifest.codes.nnz
        assert ctx.manifest.provenance.reconstruction_fvu == pytest.approx(
            one.manifest.provenance.reconstruction_fvu, rel=_fvu_rtol(N_EXAMPLES)
        )


def test_fvu_on_a_prefix_of_examples(built) -> None:
    _, sae, _, activations = built
    codes, fvu, n_fvu = context_module.encode_activations(
        sae, activations, chunk_size=7, progress=False, fvu_examples=50
    )
    assert n_fvu == 50
    assert fvu == pytest.approx(_fvu(sae, activations[:50]), rel=_fvu_rtol(7))
    np.testing.assert_allclose(
        codes.toarray(), _torch_codes(sae, activations), rtol=0, atol=_codes_tol(sae, activations)
    )


def test_codes_denser_than_the_first_chunk_grow_their_buffers(built) -> None:
    # The buffers are sized from the first chunk's density: a first chunk with no active code
    # at all (zero inputs) and denser ones after it make them grow, with the same codes.
    _, sae, _, activations = built
    x = np.array(activations, copy=True)
    x[:7] = 0
    with torch.no_grad():
        zero = sae.encode(torch.zeros(1, x.shape[1])).numpy()
    codes, _, _ = context_module.encode_activations(sae, x, chunk_size=7, progress=False)
    expected = _torch_codes(sae, x)
    np.testing.assert_allclose(codes.toarray(), expected, rtol=0, atol=_codes_tol(sae, x))
    assert codes.nnz == np.count_nonzero(expected) and codes.indices.dtype == np.int32
    assert codes[:7].nnz == 7 * np.count_nonzero(zero)


def test_codes_when_the_first_reservation_fails(built, monkeypatch: pytest.MonkeyPatch) -> None:
    # Room for every example cannot be had (a first chunk far denser than the rest, on a small
    # machine): the buffers grow as needed instead, with the same codes.
    from splatnlp.mechinterp.context import encode

    _, sae, _, activations = built
    real = encode._Appendable.reserve
    calls = []

    def reserve(self, capacity):
        calls.append(capacity)
        if len(calls) == 1:
            raise MemoryError("no room")
        return real(self, capacity)

    monkeypatch.setattr(encode._Appendable, "reserve", reserve)
    codes, _, _ = context_module.encode_activations(sae, activations, chunk_size=7, progress=False)
    np.testing.assert_allclose(
        codes.toarray(), _torch_codes(sae, activations), rtol=0, atol=_codes_tol(sae, activations)
    )
    assert len(calls) > 1


@pytest.mark.parametrize("form", ["dense", "float64", "csr", "coo", "torch", "npy", "npz"])
def test_build_from_codes(form: str, tmp_path: Path) -> None:
    sae, examples, _ = _inputs(1)
    csr = random_codes(np.random.default_rng(1), N_EXAMPLES, N_FEATURES, density=0.25)
    dense = csr.toarray()
    if form == "dense":
        codes = dense
    elif form == "float64":
        codes = dense.astype(np.float64)
    elif form == "csr":
        codes = csr
    elif form == "coo":
        codes = sp.coo_array(dense)
    elif form == "torch":
        codes = torch.from_numpy(dense)
    elif form == "npy":
        codes = tmp_path / "codes.npy"
        np.save(codes, dense)
    else:
        codes = str(tmp_path / "codes.npz")
        sp.save_npz(codes, csr)
    ctx = build_context(
        tmp_path / "c", sae=sae, examples=examples, codes=codes, model_type="full", progress=False
    )
    assert (ctx.name, ctx.model_type) == ("c", "full")
    np.testing.assert_array_equal(ctx.codes.csr.toarray(), dense)
    assert ctx.manifest.provenance.codes_from == "codes"
    assert ctx.manifest.provenance.reconstruction_fvu is None
    assert ctx.summary().reconstruction_fvu is None
    np.testing.assert_array_equal(csr.toarray(), dense)  # the caller's matrix is untouched
    load_context(tmp_path / "c").verify()


def test_build_from_records_and_vocab_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    records = random_records(rng, N_EXAMPLES)
    vocab, wvocab = small_vocabs()
    vocab.to_json(tmp_path / "vocab.json")
    ctx = build_context(
        tmp_path / "c",
        sae=random_sae(2, d_model=D_MODEL, n_features=N_FEATURES),
        examples=records,
        vocab=tmp_path / "vocab.json",
        weapon_vocab={t: i for i, t in enumerate(wvocab.tokens)},
        codes=random_codes(rng, N_EXAMPLES, N_FEATURES),
        progress=False,
    )
    assert [ctx.examples.record(i) for i in range(N_EXAMPLES)] == records
    assert ctx.model_type == "custom"


def test_build_from_sae_path(tmp_path: Path) -> None:
    sae, examples, activations = _inputs(3)
    sae_file = save_sae(sae, tmp_path / "sae.pt")
    ctx = build_context(
        tmp_path / "c", sae=sae_file, examples=examples, activations=activations, progress=False
    )
    np.testing.assert_allclose(
        ctx.codes.csr.toarray(),
        _torch_codes(sae, activations),
        rtol=0,
        atol=_codes_tol(sae, activations),
    )


def test_build_from_activation_file(tmp_path: Path) -> None:
    sae, examples, activations = _inputs(3)
    np.save(tmp_path / "acts.npy", activations)
    # Read through a read-only memory map, which torch would warn about if handed directly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx = build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=str(tmp_path / "acts.npy"),
            progress=False,
        )
    np.testing.assert_allclose(
        ctx.codes.csr.toarray(),
        _torch_codes(sae, activations),
        rtol=0,
        atol=_codes_tol(sae, activations),
    )


def test_overwrite_replaces_the_context(built, tmp_path: Path) -> None:
    out = Path(shutil.copytree(built[0], tmp_path / "ultra"))
    sae, examples, _ = _inputs(4)
    codes = random_codes(np.random.default_rng(4), N_EXAMPLES, N_FEATURES)
    ctx = build_context(
        out, sae=sae, examples=examples, codes=codes, overwrite=True, progress=False
    )
    np.testing.assert_array_equal(load_context(out).codes.csr.toarray(), codes.toarray())
    assert ctx.fingerprint == examples.fingerprint != built[2].fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ultra"]  # no .old-* or .partial-*


# -- loading does not read the codes -----------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_loading_memory_maps_codes_instead_of_reading_them(tmp_path: Path) -> None:
    # 40,000 examples x 250 active features: 10M entries, about 160 MB of codes on disk.
    n, n_features, per_row = 40_000, 4_000, 250
    rng = np.random.default_rng(5)
    offsets = rng.integers(0, n_features, size=(n, 1))
    indices = np.sort((offsets + np.arange(per_row) * (n_features // per_row)) % n_features, axis=1)
    codes = sp.csr_matrix(
        (
            rng.random(n * per_row, dtype=np.float32) + 0.01,
            indices.ravel().astype(np.int32),
            np.arange(0, n * per_row + 1, per_row),
        ),
        shape=(n, n_features),
    )
    vocab, wvocab = small_vocabs()
    examples = ExampleSet(
        example_ids=np.arange(n, dtype=np.int64),
        weapon_tokens=rng.integers(0, len(wvocab), n).astype(np.int32),
        ability_indptr=np.arange(n + 1, dtype=np.int64),
        ability_tokens=rng.integers(3, len(vocab), n).astype(np.int32),
        vocab=vocab,
        weapon_vocab=wvocab,
    )
    build_context(
        tmp_path / "big",
        sae=random_sae(5, n_features=n_features),
        examples=examples,
        codes=codes,
        progress=False,
    )
    del codes, examples, indices
    gc.collect()
    codes_bytes = sum(f.stat().st_size for f in (tmp_path / "big" / "codes").iterdir())
    assert codes_bytes > 150e6

    before = _rss_bytes()
    ctx = load_context(tmp_path / "big")
    csr, csc = ctx.codes.csr, ctx.codes.csc
    rows, _ = ctx.codes.feature(17)
    one_row = ctx.codes.example_rows([123])
    after = _rss_bytes()
    assert len(rows) > 0 and one_row.nnz == per_row
    assert after - before < codes_bytes / 20, (after - before, codes_bytes)

    # The measurement can see a read: touching every value of one orientation raises RSS.
    assert float(csc.data.sum()) > 0
    touched = _rss_bytes()
    assert touched - after > 0.8 * csc.data.nbytes, (touched - after, csc.data.nbytes)
    assert csr.shape == (n, n_features)


# -- resolving names ---------------------------------------------------------------------------
def _place(src: Path, dest: Path, label: str) -> Path:
    """A copy of ``src`` at ``dest`` whose manifest ``source`` says ``label``."""
    shutil.copytree(src, dest)
    manifest = yaml.safe_load((dest / MANIFEST).read_text())
    manifest["provenance"]["source"] = label
    (dest / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return dest


def test_resolution_order(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    src = built[0]
    explicit = _place(src, tmp_path / "explicit" / "mine", "explicit")
    arg_dir = tmp_path / "arg"
    env_dir = tmp_path / "env"
    named_dir = tmp_path / "named"
    config_dir = tmp_path / "config-dir"
    _place(src, arg_dir / "ultra", "argument")
    _place(src, env_dir / "ultra", "env")
    _place(src, named_dir / "u", "config contexts")
    _place(src, config_dir / "ultra", "config contexts_dir")
    _place(src, isolated_env / "demo" / "default" / "ultra", "demo")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {"contexts": {"ultra": str(named_dir / "u")}, "contexts_dir": str(config_dir)}
        )
    )
    monkeypatch.setenv("SPLATNLP_CONFIG", str(config_file))
    monkeypatch.setenv("SPLATNLP_CONTEXTS_DIR", str(env_dir))

    def source_of(name_or_path, **kwargs) -> str:
        return load_context(name_or_path, **kwargs).manifest.provenance.source

    # An explicit path wins over every name, whatever its folder is called.
    assert source_of(str(explicit), contexts_dir=arg_dir) == "explicit"
    assert source_of(explicit) == "explicit"
    assert source_of(str(arg_dir / "ultra")) == "argument"
    monkeypatch.chdir(tmp_path / "explicit")
    assert source_of("mine") == "explicit"  # an existing context folder in the working dir
    assert source_of("./mine") == "explicit"

    assert source_of("ultra", contexts_dir=arg_dir) == "argument"
    assert resolve_context("ultra", contexts_dir=arg_dir) == arg_dir / "ultra"
    assert source_of("ultra") == "env"
    monkeypatch.delenv("SPLATNLP_CONTEXTS_DIR")
    assert source_of("ultra") == "config contexts"
    config_file.write_text(yaml.safe_dump({"contexts_dir": str(config_dir)}))
    assert source_of("ultra") == "config contexts_dir"
    config_file.unlink()
    assert source_of("ultra") == "demo"
    # The config file chooses which demo preset is the fallback.
    _place(src, isolated_env / "demo" / "tiny" / "ultra", "demo tiny")
    config_file.write_text("demo_preset: tiny\n")
    assert source_of("ultra") == "demo tiny"


def test_list_contexts_first_one_wins(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arg_dir, env_dir = tmp_path / "arg", tmp_path / "env"
    _place(built[0], arg_dir / "ultra", "argument")
    _place(built[0], env_dir / "ultra", "env")
    _place(built[0], env_dir / "full", "env")
    (env_dir / "not-a-context").mkdir()
    monkeypatch.setenv("SPLATNLP_CONTEXTS_DIR", str(env_dir))
    entries = list_contexts(contexts_dir=arg_dir)
    assert [(e["name"], e["source"], e["path"]) for e in entries] == [
        ("ultra", "contexts_dir argument", str(arg_dir / "ultra")),
        ("full", "$SPLATNLP_CONTEXTS_DIR", str(env_dir / "full")),
    ]
    assert all(e["n_features"] == N_FEATURES and e["n_examples"] == N_EXAMPLES for e in entries)
    assert entries[0]["fingerprint"] == built[2].fingerprint


def test_list_contexts_reports_a_broken_manifest(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _place(built[0], tmp_path / "env" / "ultra", "env")
    (dest / MANIFEST).write_text("schema_version: 1\nname: [\n")
    monkeypatch.setenv("SPLATNLP_CONTEXTS_DIR", str(tmp_path / "env"))
    (entry,) = list_contexts()
    assert "not valid YAML" in entry["error"] and "n_features" not in entry


def test_unknown_name_lists_known_names(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _place(built[0], tmp_path / "env" / "full", "env")
    monkeypatch.setenv("SPLATNLP_CONTEXTS_DIR", str(tmp_path / "env"))
    with pytest.raises(
        KeyError, match=r"no context named 'ultra'; known: 'full' \(\$SPLATNLP_CONTEXTS_DIR\)"
    ) as info:
        load_context("ultra")
    assert "splatnlp-mechinterp demo" in info.value.args[0]
    monkeypatch.delenv("SPLATNLP_CONTEXTS_DIR")
    with pytest.raises(
        KeyError, match=r"no context named 'ultra'; known: none\..*splatnlp-mechinterp demo"
    ):
        load_context()


def test_bad_paths_and_config_entries(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match=r"context path '.*nowhere' does not exist"):
        load_context(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"'.*empty' is not a context folder \(no context\.yaml in it\)"
    ):
        load_context(tmp_path / "empty")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"contexts": {"ultra": str(tmp_path / "empty")}}))
    monkeypatch.setenv("SPLATNLP_CONFIG", str(config_file))
    with pytest.raises(
        FileNotFoundError,
        match=r"context 'ultra' from config '.*config\.yaml' points to '.*empty', which has no context\.yaml",
    ):
        load_context("ultra")
    config_file.write_text("contexts_dir: [\n")
    with pytest.raises(ValueError, match=r"config file '.*config\.yaml' is invalid"):
        load_context("ultra")


# -- damaged contexts --------------------------------------------------------------------------
def test_missing_or_corrupt_manifest(ctx_copy: Path) -> None:
    manifest = ctx_copy / MANIFEST
    text = manifest.read_text()
    manifest.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match=r"context manifest '.*context\.yaml' is not valid YAML"):
        MechInterpContext(ctx_copy)
    manifest.write_text("- a list\n")
    with pytest.raises(
        ValueError, match=r"context manifest '.*context\.yaml' is not a YAML mapping"
    ):
        MechInterpContext(ctx_copy)
    manifest.write_text(text.replace("n_features: 40", "n_features: -1"))
    with pytest.raises(
        ValueError, match=r"(?s)context manifest '.*context\.yaml' is invalid.*n_features"
    ):
        MechInterpContext(ctx_copy)
    manifest.write_text(text + "surprise: 1\n")
    with pytest.raises(
        ValueError, match=r"(?s)context manifest '.*context\.yaml' is invalid.*surprise"
    ):
        MechInterpContext(ctx_copy)
    manifest.unlink()
    with pytest.raises(
        FileNotFoundError, match=r"missing context manifest '.*copy/ultra/context\.yaml'"
    ):
        MechInterpContext(ctx_copy)


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, "one", None])
def test_newer_or_bad_schema_version_is_refused(ctx_copy: Path, version) -> None:
    manifest = yaml.safe_load((ctx_copy / MANIFEST).read_text())
    manifest["schema_version"] = version
    (ctx_copy / MANIFEST).write_text(yaml.safe_dump(manifest))
    with pytest.raises(
        ValueError,
        match=rf"context manifest '.*context\.yaml' has schema_version {version!r}; this version of "
        rf"splatnlp-mechinterp reads schema_version <= {SCHEMA_VERSION}",
    ):
        read_manifest(ctx_copy)


def test_missing_or_corrupt_vocab(ctx_copy: Path) -> None:
    (ctx_copy / "vocab.json").write_text("{oops")
    ctx = load_context(ctx_copy)  # vocabularies are read on first use
    with pytest.raises(
        ValueError, match=r"vocabulary file '.*ultra/vocab\.json' is not valid JSON"
    ):
        _ = ctx.vocab
    (ctx_copy / "weapon_vocab.json").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"context '.*ultra' is missing 'weapon_vocab\.json'"
    ):
        load_context(ctx_copy)


def test_missing_or_corrupt_codes(ctx_copy: Path) -> None:
    (ctx_copy / "codes" / "csc_indices.npy").write_bytes(b"garbage")
    ctx = load_context(ctx_copy)
    with pytest.raises(
        ValueError, match=r"file '.*codes/csc_indices\.npy' is not a readable \.npy"
    ):
        _ = ctx.codes.csc
    np.testing.assert_array_equal(ctx.codes.csr.shape, (N_EXAMPLES, N_FEATURES))  # CSR is fine
    (ctx_copy / "codes" / "csr_data.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"context '.*ultra' has no codes"):
        load_context(ctx_copy)


def test_codes_disagreeing_with_the_manifest(ctx_copy: Path) -> None:
    csr = load_context(ctx_copy).codes.csr.toarray()
    real_write_codes(ctx_copy / "codes", sp.csr_matrix(csr[:-1]))
    with pytest.raises(
        ValueError,
        match=rf"csr_indptr\.npy has shape \({N_EXAMPLES},\); expected \({N_EXAMPLES + 1},\)",
    ):
        _ = load_context(ctx_copy).codes.csr


def test_missing_or_corrupt_examples_and_stats(ctx_copy: Path) -> None:
    (ctx_copy / "examples" / "example_ids.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file '.*examples/example_ids\.npy'"):
        _ = load_context(ctx_copy).examples
    (ctx_copy / "stats" / "top_values.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"file '.*stats/top_values\.npy' is not a readable \.npy"):
        _ = load_context(ctx_copy).stats


def test_examples_count_must_match_the_manifest(ctx_copy: Path) -> None:
    ctx = load_context(ctx_copy)
    ExampleSet.from_records(
        [ctx.examples.record(i) for i in range(10)], vocab=ctx.vocab, weapon_vocab=ctx.weapon_vocab
    ).save(ctx_copy / "examples")
    with pytest.raises(
        ValueError, match=rf"examples/ holds 10 examples, the manifest says {N_EXAMPLES}"
    ):
        _ = load_context(ctx_copy).examples


def test_verify_catches_a_changed_example_set(ctx_copy: Path) -> None:
    tokens = np.load(ctx_copy / "examples" / "ability_tokens.npy")
    tokens[0] = 3 if tokens[0] != 3 else 4
    np.save(ctx_copy / "examples" / "ability_tokens.npy", tokens)
    with pytest.raises(
        ValueError, match=r"examples/ has fingerprint sha256:\w+, the manifest says sha256:"
    ):
        _ = load_context(ctx_copy).verify()


def test_missing_or_corrupt_sae(ctx_copy: Path) -> None:
    sae_file = ctx_copy / "sae" / "sae.pt"
    sae_file.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"could not read SplatNLP checkpoint .*sae/sae\.pt"):
        _ = load_context(ctx_copy).sae
    sae_file.unlink()
    with pytest.raises(FileNotFoundError, match=r"no SAE at .*sae/sae\.pt"):
        _ = load_context(ctx_copy).sae


# -- bad build input ---------------------------------------------------------------------------
@pytest.fixture
def inputs() -> tuple[SAE, ExampleSet, np.ndarray]:
    return _inputs(6)


def test_sae_and_activation_width_disagree(inputs, tmp_path: Path) -> None:
    sae, examples, activations = inputs
    with pytest.raises(
        ValueError, match=rf"activations have d_model {D_MODEL - 1}, but the SAE expects {D_MODEL}"
    ):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=activations[:, 1:],
            progress=False,
        )
    assert not (tmp_path / "c").exists()


def test_activation_rows_disagree(inputs, tmp_path: Path) -> None:
    sae, examples, activations = inputs
    with pytest.raises(
        ValueError,
        match=rf"activations have shape \({N_EXAMPLES - 1}, {D_MODEL}\); expected \({N_EXAMPLES}, {D_MODEL}\)",
    ):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, activations=activations[1:], progress=False
        )
    with pytest.raises(ValueError, match=rf"activations have shape \({N_EXAMPLES * D_MODEL},\)"):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=activations.ravel(),
            progress=False,
        )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_name_row_and_dim(inputs, tmp_path: Path, bad: float) -> None:
    sae, examples, activations = inputs
    activations = activations.copy()
    activations[123, 5] = bad
    with pytest.raises(ValueError, match=rf"non-finite value \({bad}\) at example row 123, dim 5"):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=activations,
            chunk_size=7,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_codes_shape_disagrees(inputs, tmp_path: Path) -> None:
    sae, examples, _ = inputs
    codes = random_codes(np.random.default_rng(6), N_EXAMPLES, N_FEATURES)
    with pytest.raises(
        ValueError,
        match=rf"codes have shape \({N_EXAMPLES - 1}, {N_FEATURES}\); expected \(n_examples={N_EXAMPLES}, n_features={N_FEATURES}\)",
    ):
        build_context(tmp_path / "c", sae=sae, examples=examples, codes=codes[1:], progress=False)
    with pytest.raises(
        ValueError,
        match=rf"codes have shape \({N_EXAMPLES}, {N_FEATURES + 1}\); expected \(n_examples={N_EXAMPLES}, n_features={N_FEATURES}\)",
    ):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            codes=sp.hstack([codes, codes[:, :1]]),
            progress=False,
        )
    with pytest.raises(
        ValueError, match=r"codes must be 2-D \(n_examples, n_features\), got shape \(5,\)"
    ):
        build_context(tmp_path / "c", sae=sae, examples=examples, codes=np.ones(5), progress=False)


def test_bad_code_values(inputs, tmp_path: Path) -> None:
    sae, examples, _ = inputs
    dense = random_codes(np.random.default_rng(6), N_EXAMPLES, N_FEATURES).toarray()
    negative = dense.copy()
    negative[4, 2] = -0.5
    with pytest.raises(ValueError, match=r"codes contain negative values \(min -0\.5\)"):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            codes=sp.csr_matrix(negative),
            progress=False,
        )
    nan = dense.copy()
    nan[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"codes contain NaN or inf values"):
        build_context(tmp_path / "c", sae=sae, examples=examples, codes=nan, progress=False)
    with pytest.raises(ValueError, match=r"codes must be numeric, got dtype bool"):
        build_context(tmp_path / "c", sae=sae, examples=examples, codes=dense > 0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_code_files(inputs, tmp_path: Path) -> None:
    sae, examples, _ = inputs
    for name in ("absent.npy", "absent.npz"):
        with pytest.raises(FileNotFoundError, match=rf"codes file '.*{name}' does not exist"):
            build_context(
                tmp_path / "c", sae=sae, examples=examples, codes=tmp_path / name, progress=False
            )
    for name in ("bad.npy", "bad.npz"):
        (tmp_path / name).write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"codes file '.*bad\.npy' is not a readable \.npy"):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, codes=tmp_path / "bad.npy", progress=False
        )
    with pytest.raises(ValueError, match=r"codes file '.*bad\.npz' is not a scipy sparse \.npz"):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, codes=tmp_path / "bad.npz", progress=False
        )
    (tmp_path / "codes.csv").write_text("1,2\n")
    with pytest.raises(
        ValueError, match=r"codes file '.*codes\.csv' has suffix '\.csv'; expected \.npy or \.npz"
    ):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, codes=tmp_path / "codes.csv", progress=False
        )


def test_bad_activation_files(inputs, tmp_path: Path) -> None:
    sae, examples, _ = inputs
    with pytest.raises(FileNotFoundError, match=r"activations file '.*absent\.npy' does not exist"):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=tmp_path / "absent.npy",
            progress=False,
        )
    (tmp_path / "bad.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"activations file '.*bad\.npy' is not a readable \.npy"):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=tmp_path / "bad.npy",
            progress=False,
        )
    (tmp_path / "acts.txt").write_text("1 2\n")
    with pytest.raises(
        ValueError,
        match=r"activations file '.*acts\.txt' has suffix '\.txt'; expected \.npy or \.safetensors",
    ):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=tmp_path / "acts.txt",
            progress=False,
        )
    with pytest.raises(
        TypeError, match=r"activations must be a path, numpy array or torch tensor, got list"
    ):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            activations=[[0.0] * D_MODEL],
            progress=False,
        )


def test_token_outside_the_vocab(inputs, tmp_path: Path) -> None:
    sae, _, activations = inputs
    vocab, wvocab = small_vocabs()
    records = random_records(np.random.default_rng(6), N_EXAMPLES)
    records[9] = {**records[9], "abilities": ["swim_speed_up_4"]}
    with pytest.raises(
        ValueError,
        match=rf"example {records[9]['id']}: ability token 'swim_speed_up_4' is not in vocab",
    ):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=records,
            vocab=vocab,
            weapon_vocab=wvocab,
            activations=activations,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"vocab is required when examples are not an ExampleSet"):
        build_context(
            tmp_path / "c", sae=sae, examples=records, activations=activations, progress=False
        )


def test_vocab_must_match_the_example_set(inputs, tmp_path: Path) -> None:
    sae, examples, activations = inputs
    with pytest.raises(
        ValueError, match=r"weapon_vocab differs from the ExampleSet's own weapon_vocab"
    ):
        build_context(
            tmp_path / "c",
            sae=sae,
            examples=examples,
            weapon_vocab={"weapon_id_0": 0},
            activations=activations,
            progress=False,
        )


def test_exactly_one_of_activations_and_codes(inputs, tmp_path: Path) -> None:
    sae, examples, activations = inputs
    codes = _torch_codes(sae, activations)
    with pytest.raises(ValueError, match=r"pass exactly one of activations= or codes="):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, activations=activations, codes=codes
        )
    with pytest.raises(ValueError, match=r"pass exactly one of activations= or codes="):
        build_context(tmp_path / "c", sae=sae, examples=examples)


def test_existing_out_dir_needs_overwrite(inputs, tmp_path: Path) -> None:
    sae, examples, activations = inputs
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(
        FileExistsError, match=r"'.*/c' already exists; pass overwrite=True to replace it"
    ):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, activations=activations, progress=False
        )
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"


def test_n_top_examples_must_be_positive(inputs, tmp_path: Path) -> None:
    sae, examples, activations = inputs
    with pytest.raises(ValueError, match=r"n_top_examples must be >= 1, got 0"):
        build_context(
            tmp_path / "c", sae=sae, examples=examples, activations=activations, n_top_examples=0
        )


# -- interrupted builds ------------------------------------------------------------------------
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize(
    ("target", "error"),
    [("compute_feature_stats", RuntimeError), ("write_codes", KeyboardInterrupt)],
)
def test_interrupted_build_leaves_nothing_that_loads(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, error: type
) -> None:
    sae, examples, activations = inputs
    seen: list[Path] = []

    def fail(*args, **kwargs):
        if target == "write_codes":
            real_write_codes(*args, **kwargs)  # half the work done on disk, then the interrupt
            seen.append(Path(args[0]).parent)
        raise error("interrupted")

    monkeypatch.setattr(context_module, target, fail)
    out = tmp_path / "contexts" / "ultra"
    with pytest.raises(error, match="interrupted"):
        build_context(out, sae=sae, examples=examples, activations=activations, progress=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
    if seen:
        assert ".partial-" in seen[0].name and not seen[0].exists()
    with pytest.raises(KeyError, match=r"no context named 'ultra'"):
        load_context("ultra", contexts_dir=out.parent)


def test_failed_overwrite_keeps_the_old_context(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Path(shutil.copytree(built[0], tmp_path / "ultra"))
    before = load_context(out).codes.csr.toarray()
    sae, examples, activations = _inputs(7)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(context_module, "compute_feature_stats", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        build_context(
            out, sae=sae, examples=examples, activations=activations, overwrite=True, progress=False
        )
    assert _leftovers(tmp_path) == []
    ctx = load_context(out)
    ctx.verify()
    assert ctx.fingerprint == built[2].fingerprint
    np.testing.assert_array_equal(ctx.codes.csr.toarray(), before)


def test_decoder_rows_are_kept_beside_the_sae(tmp_path: Path) -> None:
    """build_context writes decoder.npy (the SAE's W_dec as stored); a context without it (built
    by an older version) reads the SAE instead, and a wrong file is refused."""
    from helpers import random_examples, random_sae

    from splatnlp.mechinterp.context import MechInterpContext, build_context
    from splatnlp.mechinterp.context.load import DECODER_FILE

    rng = np.random.default_rng(0)
    sae = random_sae(3, n_features=12)
    ctx = build_context(tmp_path / "c", sae=sae, examples=random_examples(rng, 50),
                        activations=torch.from_numpy(rng.standard_normal((50, 16)).astype(np.float32)),
                        n_top_examples=5, progress=False)
    np.testing.assert_array_equal(ctx.decoder_weights, sae.W_dec.numpy())
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "c", old)
    (old / DECODER_FILE).unlink()
    np.testing.assert_array_equal(MechInterpContext(old).decoder_weights, sae.W_dec.numpy())
    np.save(old / DECODER_FILE, np.zeros((3, 16), np.float32))
    with pytest.raises(ValueError, match=r"decoder.npy holds float32 \(3, 16\); expected float32 \(12, 16\)"):
        _ = MechInterpContext(old).decoder_weights
