"""Tests for splatnlp/mechinterp/importers/upstream.py on a small dump in upstream's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from splatnlp.mechinterp.context import build_context  # noqa: E402
from splatnlp.mechinterp.context.importers import import_upstream_dump, read_upstream_dump  # noqa: E402
from splatnlp.mechinterp.context.sae import splatnlp_sae  # noqa: E402
from splatnlp.mechinterp.context.vocab import splatoon_ability_vocab, weapon_vocab  # noqa: E402

BATCH_SIZES = (7, 5, 6)
N_FEATURES = 12
D_MODEL = 8
WEAPON_NUMBERS = (0, 10, 20, 30, 40)
ZARR_V3 = int(zarr.__version__.split(".")[0]) >= 3
# zarr 3 writes both formats: batch 0 as v2, the rest as v3, so the reader sees each.
ZARR_FORMATS = (2, 3, 3) if ZARR_V3 else (None, None, None)


@dataclass
class Dump:
    """A dump on disk and what it holds, in global_index order."""

    root: Path
    codes: np.ndarray  # (n_examples, n_features)
    sample_ids: np.ndarray  # (n_examples,)
    weapons: list[str]
    abilities: list[list[str]]

    def batch(self, number: int) -> tuple[Path, Path]:
        stem = f"batch_{number:04d}"
        return (
            self.root / "activations" / f"{stem}.zarr",
            self.root / "metadata" / f"{stem}.parquet",
        )


def write_zarr(path: Path, values: np.ndarray, *, zarr_format: int | None = None) -> None:
    kwargs = {} if zarr_format is None else {"zarr_format": zarr_format}
    array = zarr.open_array(
        store=str(path),
        mode="w",
        shape=values.shape,
        chunks=(4,) + values.shape[1:],
        dtype=values.dtype,
        **kwargs,
    )
    array[...] = values


def write_parquet(path: Path, columns: dict[str, list]) -> None:
    types = {
        "sample_id": pa.int64(),
        "ability_tokens": pa.list_(pa.int64()),
        "weapon_id_token": pa.int64(),
        "weapon_name": pa.string(),
        "global_index": pa.int64(),
    }
    table = pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()})
    pq.write_table(table, path)


def read_columns(path: Path) -> dict[str, list]:
    return pq.read_table(path).to_pydict()


def make_dump(root: Path) -> Dump:
    """Three batches (7, 5, 6 samples, 12 features), global_index shuffled across batches."""
    rng = np.random.default_rng(0)
    vocab, weapons = splatoon_ability_vocab(), weapon_vocab(WEAPON_NUMBERS)
    n = sum(BATCH_SIZES)
    global_index = rng.permutation(n)
    sample_ids = rng.choice(np.arange(100, 1000), size=n, replace=False)
    activations = rng.gamma(1.0, 1.0, size=(n, N_FEATURES)) * (rng.random((n, N_FEATURES)) < 0.4)
    activations = np.minimum(activations, 6.0).astype(np.float32)
    activations[3] = 0.0  # a sample with no active feature
    real_ids = [i for i in range(len(vocab)) if i not in vocab.special_ids()]
    ability_ids = [
        list(rng.choice(real_ids, size=rng.integers(0, 7), replace=False)) for _ in range(n)
    ]
    ability_ids[5] = []  # a sample with no ability tokens
    weapon_ids = rng.integers(0, len(weapons), size=n)

    (root / "activations").mkdir(parents=True)
    (root / "metadata").mkdir()
    start = 0
    for number, (size, fmt) in enumerate(zip(BATCH_SIZES, ZARR_FORMATS, strict=True)):
        rows = slice(start, start + size)
        stem = f"batch_{number:04d}"
        write_zarr(root / "activations" / f"{stem}.zarr", activations[rows], zarr_format=fmt)
        write_parquet(
            root / "metadata" / f"{stem}.parquet",
            {
                "sample_id": [int(s) for s in sample_ids[rows]],
                "ability_tokens": [[int(t) for t in ids] for ids in ability_ids[rows]],
                "weapon_id_token": [int(w) for w in weapon_ids[rows]],
                "weapon_name": [f"Weapon {WEAPON_NUMBERS[w]}" for w in weapon_ids[rows]],
                "global_index": [int(g) for g in global_index[rows]],
            },
        )
        start += size

    by_gi = np.argsort(global_index)
    return Dump(
        root=root,
        codes=activations[by_gi],
        sample_ids=sample_ids[by_gi],
        weapons=[weapons.token(int(weapon_ids[i])) for i in by_gi],
        abilities=[[vocab.token(int(t)) for t in ability_ids[i]] for i in by_gi],
    )


def make_sae(n_features: int = N_FEATURES):
    gen = torch.Generator().manual_seed(0)
    return splatnlp_sae(
        torch.randn(D_MODEL, n_features, generator=gen),
        torch.zeros(n_features),
        torch.randn(n_features, D_MODEL, generator=gen),
        torch.zeros(D_MODEL),
    )


def read(root: Path, **kwargs):
    return read_upstream_dump(
        root,
        vocab=splatoon_ability_vocab(),
        weapon_vocab=weapon_vocab(WEAPON_NUMBERS),
        progress=False,
        **kwargs,
    )


@pytest.fixture
def dump(tmp_path: Path) -> Dump:
    return make_dump(tmp_path / "dump")


# -- reading a good dump ---------------------------------------------------------------------------
def test_import_round_trips_codes_and_examples(dump: Dump, tmp_path: Path) -> None:
    ctx = import_upstream_dump(
        dump.root,
        tmp_path / "ctx",
        sae=make_sae(),
        vocab=splatoon_ability_vocab(),
        weapon_vocab=weapon_vocab(WEAPON_NUMBERS),
        progress=False,
        n_top_examples=5,
    )
    assert ctx.n_examples == sum(BATCH_SIZES)
    assert ctx.n_features == N_FEATURES
    np.testing.assert_array_equal(ctx.codes.csr.toarray(), dump.codes)
    np.testing.assert_array_equal(ctx.examples.example_ids, dump.sample_ids)
    assert [ctx.examples.weapon(i) for i in range(ctx.n_examples)] == dump.weapons
    assert [ctx.examples.abilities(i) for i in range(ctx.n_examples)] == dump.abilities
    assert ctx.manifest.provenance.codes_from == "codes"
    assert ctx.manifest.provenance.source == f"upstream dump {dump.root}"
    assert ctx.manifest.provenance.model_extra["upstream_batches"] == len(BATCH_SIZES)
    assert ctx.manifest.n_top_examples == 5
    ctx.verify()


@pytest.mark.parametrize("chunk_rows", [1, 3, 4, 5, 4096])
def test_read_orders_by_global_index_for_any_chunking(dump: Dump, chunk_rows: int) -> None:
    examples, codes = read(dump.root, chunk_rows=chunk_rows)
    assert codes.format == "csr"
    assert codes.shape == (sum(BATCH_SIZES), N_FEATURES)
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(codes.toarray(), dump.codes)
    np.testing.assert_array_equal(examples.example_ids, dump.sample_ids)
    assert [examples.abilities(i) for i in range(len(examples))] == dump.abilities


def test_vocabularies_as_mappings_or_json_paths(dump: Dump, tmp_path: Path) -> None:
    vocab_path = tmp_path / "vocab.json"
    splatoon_ability_vocab().to_json(vocab_path)
    weapons = {f"weapon_id_{n}": i for i, n in enumerate(WEAPON_NUMBERS)}
    examples, codes = read_upstream_dump(
        dump.root, vocab=str(vocab_path), weapon_vocab=weapons, progress=False
    )
    assert examples.vocab == splatoon_ability_vocab()
    assert [examples.weapon(i) for i in range(len(examples))] == dump.weapons


def test_batches_sort_by_number_not_name(dump: Dump) -> None:
    # batch_10 sorts before batch_2 as text; the dump must still read in number order.
    for old, new in ((2, 10), (1, 2)):
        for path in dump.batch(old):
            path.rename(path.with_name(f"batch_{new}{path.suffix}"))
    _, codes = read(dump.root)
    np.testing.assert_array_equal(codes.toarray(), dump.codes)


def test_array_alone_in_a_zarr_group_is_read(dump: Dump) -> None:
    zarr_path, _ = dump.batch(1)
    values = np.asarray(zarr.open(str(zarr_path), mode="r")[...])
    group = zarr.open_group(str(zarr_path), mode="w")
    group.create_array("activations", shape=values.shape, dtype=values.dtype)[...] = values
    _, codes = read(dump.root)
    np.testing.assert_array_equal(codes.toarray(), dump.codes)


def test_package_import_does_not_import_zarr_or_pyarrow() -> None:
    code = (
        "import sys, splatnlp.mechinterp.context.importers\n"
        "assert 'zarr' not in sys.modules and 'pyarrow' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", ["zarr", "pyarrow"])
def test_missing_optional_dependency_names_the_extra(
    dump: Dump, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ImportError, match=rf"{module}.*pip install 'splatnlp-mechinterp\[importers\]'"
    ):
        read(dump.root)


# -- bad folders -------------------------------------------------------------------------------------
def test_missing_dump_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"upstream dump folder '.*nowhere' does not exist"):
        read(tmp_path / "nowhere")


@pytest.mark.parametrize("sub", ["activations", "metadata"])
def test_dump_without_subfolder(tmp_path: Path, sub: str) -> None:
    (tmp_path / "dump" / ("metadata" if sub == "activations" else "activations")).mkdir(
        parents=True
    )
    with pytest.raises(FileNotFoundError, match=rf"has no {sub}/ folder"):
        read(tmp_path / "dump")


def test_dump_without_batches(tmp_path: Path) -> None:
    for sub in ("activations", "metadata"):
        (tmp_path / "dump" / sub).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no batches"):
        read(tmp_path / "dump")


def test_zarr_without_parquet(dump: Dump) -> None:
    dump.batch(1)[1].unlink()
    with pytest.raises(
        FileNotFoundError, match=r"batch 'batch_0001' has activations .* but no metadata"
    ):
        read(dump.root)


def test_parquet_without_zarr(dump: Dump) -> None:
    _, parquet_path = dump.batch(2)
    (dump.root / "metadata" / "batch_0003.parquet").write_bytes(parquet_path.read_bytes())
    with pytest.raises(
        FileNotFoundError,
        match=r"batch 'batch_0003' has metadata .* but no activations; expected .*batch_0003.zarr'",
    ):
        read(dump.root)


def test_two_files_claiming_one_batch_number(dump: Dump) -> None:
    _, parquet_path = dump.batch(1)
    parquet_path.with_name("batch_1.parquet").write_bytes(parquet_path.read_bytes())
    with pytest.raises(ValueError, match="both claim batch number 1"):
        read(dump.root)


def test_unreadable_zarr(dump: Dump) -> None:
    zarr_path, _ = dump.batch(0)
    for child in sorted(zarr_path.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    with pytest.raises(ValueError, match=r"batch_0000.zarr' is not a readable zarr array"):
        read(dump.root)


def test_zarr_that_is_not_2d(dump: Dump) -> None:
    write_zarr(dump.batch(0)[0], np.zeros(7, dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"batch_0000.zarr' holds an array of shape \(7,\); expected 2-D"
    ):
        read(dump.root)


def test_zarr_group_with_several_arrays(dump: Dump) -> None:
    zarr_path, _ = dump.batch(0)
    group = zarr.open_group(str(zarr_path), mode="w")
    for key in ("a", "b"):
        group.create_array(key, shape=(7, N_FEATURES), dtype="float32")
    with pytest.raises(
        ValueError, match=r"zarr group holding arrays \['a', 'b'\]; expected one array"
    ):
        read(dump.root)


def test_unreadable_parquet(dump: Dump) -> None:
    dump.batch(2)[1].write_text("not parquet")
    with pytest.raises(ValueError, match=r"batch_0002.parquet' is not a readable parquet file"):
        read(dump.root)


# -- bad metadata ------------------------------------------------------------------------------------
def test_row_counts_differ(dump: Dump) -> None:
    _, parquet_path = dump.batch(1)
    columns = {k: v[:-1] for k, v in read_columns(parquet_path).items()}
    write_parquet(parquet_path, columns)
    with pytest.raises(
        ValueError,
        match=r"batch 'batch_0001': .*batch_0001.zarr' has 5 rows but .*batch_0001.parquet' has 4",
    ):
        read(dump.root)


def test_missing_column(dump: Dump) -> None:
    _, parquet_path = dump.batch(0)
    columns = read_columns(parquet_path)
    del columns["global_index"]
    write_parquet(parquet_path, columns)
    with pytest.raises(
        ValueError,
        match=r"batch_0000.parquet' lacks column\(s\) \['global_index'\]; found \['sample_id', 'ability_tokens', 'weapon_id_token', 'weapon_name'\]",
    ):
        read(dump.root)


def test_weapon_name_is_not_required(dump: Dump) -> None:
    _, parquet_path = dump.batch(0)
    columns = read_columns(parquet_path)
    del columns["weapon_name"]
    write_parquet(parquet_path, columns)
    _, codes = read(dump.root)
    np.testing.assert_array_equal(codes.toarray(), dump.codes)


def test_non_integer_column(dump: Dump) -> None:
    _, parquet_path = dump.batch(0)
    table = pq.read_table(parquet_path)
    table = table.set_column(
        table.schema.get_field_index("global_index"),
        "global_index",
        table.column("global_index").cast(pa.float64()),
    )
    pq.write_table(table, parquet_path)
    with pytest.raises(
        ValueError, match=r"column 'global_index' has type double; expected integers"
    ):
        read(dump.root)


def test_null_in_column(dump: Dump) -> None:
    _, parquet_path = dump.batch(0)
    columns = read_columns(parquet_path)
    columns["sample_id"][2] = None
    write_parquet(parquet_path, columns)
    with pytest.raises(ValueError, match=r"column 'sample_id' has 1 null value"):
        read(dump.root)


def test_duplicate_global_index(dump: Dump) -> None:
    _, parquet_path = dump.batch(2)
    columns = read_columns(parquet_path)
    first = read_columns(dump.batch(0)[1])["global_index"][0]
    columns["global_index"][3] = first
    write_parquet(parquet_path, columns)
    with pytest.raises(
        ValueError,
        match=rf"global_index {first} appears more than once \(.*batch_0000.parquet' row 0 and .*batch_0002.parquet' row 3\)",
    ):
        read(dump.root)


def test_duplicate_sample_id(dump: Dump) -> None:
    _, parquet_path = dump.batch(1)
    columns = read_columns(parquet_path)
    columns["sample_id"][4] = columns["sample_id"][1]
    write_parquet(parquet_path, columns)
    with pytest.raises(
        ValueError,
        match=rf"sample_id {columns['sample_id'][1]} appears more than once \(.*batch_0001.parquet' row 1 and .*batch_0001.parquet' row 4\)",
    ):
        read(dump.root)


def test_ability_token_outside_vocab(dump: Dump) -> None:
    _, parquet_path = dump.batch(1)
    columns = read_columns(parquet_path)
    columns["ability_tokens"][2] = [4, len(splatoon_ability_vocab())]
    write_parquet(parquet_path, columns)
    n = len(splatoon_ability_vocab())
    with pytest.raises(
        ValueError,
        match=rf"batch_0001.parquet': sample_id {columns['sample_id'][2]} has ability token {n}, outside vocab \(valid ids 0..{n - 1}\)",
    ):
        read(dump.root)


def test_weapon_token_outside_vocab(dump: Dump) -> None:
    _, parquet_path = dump.batch(2)
    columns = read_columns(parquet_path)
    columns["weapon_id_token"][0] = -1
    write_parquet(parquet_path, columns)
    with pytest.raises(
        ValueError,
        match=rf"sample_id {columns['sample_id'][0]} has weapon_id_token -1, outside weapon_vocab \(valid ids 0..4\)",
    ):
        read(dump.root)


# -- bad activations ---------------------------------------------------------------------------------
def test_feature_counts_differ(dump: Dump) -> None:
    write_zarr(dump.batch(2)[0], np.zeros((6, N_FEATURES + 1), dtype=np.float32))
    with pytest.raises(
        ValueError,
        match=r"batch 'batch_0002' has 13 features .* but batch 'batch_0000' has 12; expected every batch",
    ):
        read(dump.root)


@pytest.mark.parametrize(
    ("value", "reason"), [(np.nan, "non-finite"), (np.inf, "non-finite"), (-0.5, "negative")]
)
def test_bad_activation_values(dump: Dump, value: float, reason: str) -> None:
    zarr_path, parquet_path = dump.batch(1)
    values = np.asarray(zarr.open(str(zarr_path), mode="r")[...])
    values[4, 9] = value
    write_zarr(zarr_path, values)
    sample = read_columns(parquet_path)["sample_id"][4]
    with pytest.raises(
        ValueError,
        match=rf"batch_0001.zarr': {reason} value .* at row 4 \(sample_id {sample}\), feature 9; expected finite, non-negative",
    ):
        read(dump.root, chunk_rows=2)


def test_non_numeric_activations(dump: Dump) -> None:
    write_zarr(dump.batch(0)[0], np.zeros((7, N_FEATURES), dtype=bool))
    with pytest.raises(ValueError, match=r"holds dtype bool; expected numeric activations"):
        read(dump.root)


# -- bad arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_rows", [0, -1, 2.5, True])
def test_bad_chunk_rows(dump: Dump, chunk_rows) -> None:
    with pytest.raises(
        ValueError, match=rf"chunk_rows must be an integer >= 1, got {chunk_rows!r}"
    ):
        read(dump.root, chunk_rows=chunk_rows)


def test_bad_vocab_type(dump: Dump) -> None:
    with pytest.raises(
        TypeError, match=r"vocab must be a Vocab, a \{token: id\} mapping or a JSON path, got list"
    ):
        read_upstream_dump(dump.root, vocab=["a"], weapon_vocab=weapon_vocab(WEAPON_NUMBERS))


def test_vocab_json_missing(dump: Dump, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"vocabulary file '.*missing.json' does not exist"):
        read_upstream_dump(
            dump.root, vocab=tmp_path / "missing.json", weapon_vocab=weapon_vocab(WEAPON_NUMBERS)
        )


def test_sae_feature_count_differs(dump: Dump, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"upstream dump .* has 12 features .* but the SAE has n_features=16"
    ):
        import_upstream_dump(
            dump.root,
            tmp_path / "ctx",
            sae=make_sae(16),
            vocab=splatoon_ability_vocab(),
            weapon_vocab=weapon_vocab(WEAPON_NUMBERS),
            progress=False,
        )
    assert not (tmp_path / "ctx").exists()


def test_sae_feature_count_differs_via_build_context(dump: Dump, tmp_path: Path) -> None:
    # The same mismatch when read_upstream_dump output is handed to build_context directly.
    examples, codes = read(dump.root)
    with pytest.raises(
        ValueError, match=r"codes have shape \(18, 12\); expected \(n_examples=18, n_features=16\)"
    ):
        build_context(
            tmp_path / "ctx", sae=make_sae(16), examples=examples, codes=codes, progress=False
        )


def test_existing_out_dir_fails_before_reading(dump: Dump, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    with pytest.raises(FileExistsError, match=r"'.*ctx' already exists; pass overwrite=True"):
        import_upstream_dump(
            tmp_path / "nowhere",
            tmp_path / "ctx",
            sae=make_sae(),
            vocab=splatoon_ability_vocab(),
            weapon_vocab=weapon_vocab(WEAPON_NUMBERS),
        )


def test_overwrite_and_custom_source(dump: Dump, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    ctx = import_upstream_dump(
        dump.root,
        tmp_path / "ctx",
        sae=make_sae(),
        vocab=splatoon_ability_vocab(),
        weapon_vocab=weapon_vocab(WEAPON_NUMBERS),
        name="ultra",
        overwrite=True,
        progress=False,
        source="my dump",
        provenance={"note": "test"},
    )
    assert ctx.name == "ultra" and ctx.model_type == "ultra"
    assert ctx.manifest.provenance.source == "my dump"
    extra = ctx.manifest.provenance.model_extra
    assert extra["note"] == "test" and extra["upstream_dump"] == str(dump.root.resolve())
    assert json.loads((tmp_path / "ctx" / "weapon_vocab.json").read_text())["weapon_id_40"] == 4


@pytest.mark.parametrize("key", ["codes", "examples", "activations"])
def test_build_kwargs_that_the_importer_fills_in(dump: Dump, tmp_path: Path, key: str) -> None:
    with pytest.raises(TypeError, match=rf"fills in \['{key}'\] from the dump itself"):
        import_upstream_dump(
            dump.root,
            tmp_path / "ctx",
            sae=make_sae(),
            vocab=splatoon_ability_vocab(),
            weapon_vocab=weapon_vocab(WEAPON_NUMBERS),
            **{key: None},
        )
