"""Batched WebDataset samples (``output.webdataset.rows_per_sample``) and compressions: write-then-read
round trips through the real ``webdataset`` library and an independent tarfile/NumPy reference;
``ShardDataset`` giving the Parquet batches from every layout; states moving between formats,
layouts and world sizes; the docs' recipe run as written."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import re
import tarfile
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from shardsmith.demo import generate
from shardsmith.errors import InputError, ShardsmithError
from shardsmith.ir import Column, Schema
from shardsmith.shards import readers
from shardsmith.shards.readers import _tar_bytes
from shardsmith.shards.webdataset import TarShard, unzstd, write_webdataset, zstd_compress, zstd_content_size

from .conftest import LAYOUTS, batch_keys, compile_demo

torch = pytest.importorskip("torch")
from shardsmith.shards import ShardDataset, ShardLoader  # noqa: E402

BS = 1000
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "loader.md")
MEMBERS = ("label.npy", "continuous.npy", "categorical.npy", "row.npy")


def _manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def _pairs(d, split="train"):
    """(parquet shard, tar shard) entries of a split, in order."""
    shards = _manifest(d)["splits"][split]["shards"]
    by_format = [[s for s in shards if s["format"] == fmt] for fmt in ("parquet", "webdataset")]
    return list(zip(*by_format))


def _roles(d):
    schema = _manifest(d)["schema"]
    return {role: [c["name"] for c in schema if c["role"] == role] for role in ("label", "continuous", "categorical")}


def _matrix(table, names):
    return np.column_stack([table.column(n).to_numpy() for n in names])


def _recipe_rows(url):
    """The docs' recipe for batched shards (either compression): one tuple per row."""
    return (wds.WebDataset(url, shardshuffle=False).decode(unzstd)
            .to_tuple(*[f"{m};{m}.zst" for m in MEMBERS]).unbatched())


# --- the real webdataset library --------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["batched", "batched-zstd", "batched-gzip"])
def test_webdataset_reads_batched_samples_row_for_row(layouts, layout):
    d, roles = layouts[layout], _roles(layouts[layout])
    per, comp = LAYOUTS[layout]
    for pqs, tar in _pairs(d):
        assert tar["path"].endswith(".tar.gz" if comp == "gzip" else ".tar")
        table = pq.read_table(os.path.join(d, pqs["path"]))
        rows = list(_recipe_rows(os.path.join(d, tar["path"])))
        assert len(rows) == tar["rows"] == table.num_rows
        label, cont, cat, row = (np.stack(x) for x in zip(*rows))
        np.testing.assert_array_equal(row, np.arange(table.num_rows))
        np.testing.assert_array_equal(label[:, 0], table.column("label").to_numpy())
        np.testing.assert_array_equal(cont, _matrix(table, roles["continuous"]))
        np.testing.assert_array_equal(cat, _matrix(table, roles["categorical"]))
        assert (label.dtype, cont.dtype, cat.dtype, row.dtype) == (np.int8, np.float32, np.int32, np.int64)
    samples = list(wds.WebDataset(os.path.join(d, tar["path"]), shardshuffle=False).decode(unzstd))
    assert [len(s[f"row.npy{'.zst' if comp == 'zstd' else ''}"]) for s in samples] == \
        [min(per, tar["rows"] - i) for i in range(0, tar["rows"], per)]
    doc = samples[1]["json.zst" if comp == "zstd" else "json"]
    stem = os.path.basename(tar["path"]).split(".")[0]
    assert doc["key"] == samples[1]["__key__"] == f"{stem}_{per:09d}" and doc["row"] == per
    suffix = ".zst" if comp == "zstd" else ""
    assert doc["columns"] == {f"label.npy{suffix}": roles["label"], f"continuous.npy{suffix}": roles["continuous"],
                              f"categorical.npy{suffix}": roles["categorical"]}


def test_the_docs_recipe_reads_the_default_output_as_written(dataset_dir, layouts):
    """The docs' two WebDataset examples, run as written against compiled shards."""
    blocks = re.findall(r"```python\n(.*?)```", open(DOCS).read().split("## WebDataset shards", 1)[1], re.S)
    plain, zstd = blocks[0].replace("shards/criteo_synthetic", dataset_dir), blocks[1]
    ns: dict = {}
    exec(plain, ns)  # noqa: S102
    pqs, tar = _pairs(dataset_dir)[0]
    table = pq.read_table(os.path.join(dataset_dir, pqs["path"])).slice(0, 1)
    roles = _roles(dataset_dir)
    assert ns["urls"][0].endswith(tar["path"]) and ns["row"] == 0
    assert ns["label"].dtype == np.int8 and ns["label"].shape == (1,)
    assert ns["continuous"].dtype == np.float32 and ns["continuous"].shape == (13,)
    assert ns["categorical"].dtype == np.int32 and ns["categorical"].shape == (27,)
    np.testing.assert_array_equal(ns["continuous"], _matrix(table, roles["continuous"])[0])
    np.testing.assert_array_equal(ns["categorical"], _matrix(table, roles["categorical"])[0])
    d = layouts["batched-zstd"]
    ns["urls"] = [os.path.join(d, t["path"]) for _, t in _pairs(d)]
    exec(zstd, ns)  # noqa: S102
    label, cont, cat, row = next(iter(ns["rows"]))
    np.testing.assert_array_equal(cont, ns["continuous"])
    np.testing.assert_array_equal(cat, ns["categorical"])
    assert row == 0 and np.array_equal(label, ns["label"])


# --- the bytes: an independent reference --------------------------------------------------------------------
def _table():
    return pa.table({"label": pa.array([1, 0, 1, 1, 0], pa.int8()),
                     "x": pa.array([0.5, None, -2.0, 3.0, 1e30], pa.float32()),
                     "w": pa.array([1.0, 2.0, 3.0, 4.0, 5.0], pa.float64()),
                     "c": pa.array([3, 4, 5, 6, 7], pa.int32()),
                     "name": pa.array(["a", "ü", None, "dd", ""])})


def _schema(table, roles):
    dtype = lambda t: "string" if pa.types.is_string(t) else np.dtype(t.to_pandas_dtype()).name  # noqa: E731
    return Schema(tuple(Column(f.name, dtype(f.type), roles.get(f.name, "other")) for f in table.schema))


ROLES = {"label": "label", "x": "continuous", "w": "continuous", "c": "categorical"}


def _reference_tar(table, per: int) -> bytes:
    """The batched layout written with tarfile, np.save and json.dumps (continuous float64: x and w)."""
    ref = io.BytesIO()
    cols = {n: table.column(n).to_numpy(zero_copy_only=False) for n in ("label", "x", "w", "c")}
    names = table.column("name").to_pylist()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for first in range(0, table.num_rows, per):
            stop = min(first + per, table.num_rows)
            key = f"part-00000_{first:09d}"
            arrays = {"label.npy": cols["label"][first:stop, None],
                      "continuous.npy": np.column_stack([cols["x"], cols["w"]]).astype(np.float64)[first:stop],
                      "categorical.npy": cols["c"][first:stop, None], "row.npy": np.arange(first, stop)}
            for ext, arr in arrays.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(arr))
                _add(tf, f"{key}.{ext}", buf.getvalue())
            doc = {"key": key, "row": first, "rows": stop - first,
                   "columns": {"label.npy": ["label"], "continuous.npy": ["x", "w"], "categorical.npy": ["c"]},
                   "name": names[first:stop]}
            _add(tf, f"{key}.json", json.dumps(doc, separators=(",", ":")).encode())
    return ref.getvalue()


def _add(tf, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o444, 0, 0, "", ""
    tf.addfile(ti, io.BytesIO(data))


@pytest.mark.parametrize("per", [2, 5, 1024])
def test_batched_bytes_equal_what_tarfile_and_numpy_write(tmp_path, per):
    table = _table()
    sink = SimpleNamespace(webdataset_compression="none", webdataset_rows_per_sample=per)
    info = write_webdataset(table, str(tmp_path / "part-00000.tar"), sink, schema=_schema(table, ROLES))
    ours = (tmp_path / "part-00000.tar").read_bytes()
    assert info["bytes"] == len(ours) and ours == _reference_tar(table, per)


def test_zstd_members_decompress_to_the_uncompressed_members(tmp_path):
    table, schema = _table(), _schema(_table(), ROLES)
    plain, packed = (write_webdataset(table, str(tmp_path / comp / "part-00000.tar"),
                                      SimpleNamespace(webdataset_compression=comp, webdataset_rows_per_sample=2),
                                      schema=schema) for comp in ("none", "zstd"))
    with tarfile.open(plain["path"]) as a, tarfile.open(packed["path"]) as b:
        ma, mb = a.getmembers(), b.getmembers()
        assert [m.name + ".zst" for m in ma] == [m.name for m in mb]
        pairs = [(a.extractfile(x).read(), b.extractfile(y).read()) for x, y in zip(ma, mb)]
    for (raw, packed_), m in zip(pairs, ma):
        unpacked = pa.decompress(packed_, zstd_content_size(packed_[:18]), codec="zstd", asbytes=True)
        if m.name.endswith(".npy"):
            assert unpacked == raw
            continue
        doc, ref = json.loads(unpacked), json.loads(raw)  # json: the same, but names its members as written
        assert doc.pop("columns") == {k + ".zst": v for k, v in ref.pop("columns").items()} and doc == ref
    assert doc["name"] == [""] and doc["row"] == 4


def test_group_dtype_is_the_common_type_of_its_columns(tmp_path):
    """continuous.npy is float32 for float32 columns, float64 as soon as one is float64 (both layouts)."""
    table = _table()
    for per in (1, 3):
        sink = SimpleNamespace(webdataset_compression="none", webdataset_rows_per_sample=per)
        for roles, want in ((ROLES, np.float64), ({**ROLES, "w": "other"}, np.float32)):
            path = write_webdataset(table, str(tmp_path / f"{per}{want.__name__}" / "part-00000.tar"), sink,
                                    schema=_schema(table, roles))["path"]
            first = next(iter(wds.WebDataset(path, shardshuffle=False).decode()))
            width = len(first["json"]["columns"]["continuous.npy"])
            assert first["continuous.npy"].dtype == want
            assert first["continuous.npy"].shape == ((width,) if per == 1 else (per, width))


@pytest.mark.parametrize("comp", ["none", "zstd", "gzip"])
def test_bad_columns_fail_naming_the_column_and_write_nothing(tmp_path, comp):
    sink = SimpleNamespace(webdataset_compression=comp, webdataset_rows_per_sample=4)
    table = pa.table({"label": pa.array([1, None, 0], pa.int64()), "c": pa.array([1, 2, 3], pa.int32())})
    with pytest.raises(ShardsmithError, match="'label' has 1 null"):
        write_webdataset(table, str(tmp_path / "part-00000.tar"), sink, schema=_schema(table, {"label": "label"}))
    table = pa.table({"c": pa.array([1, 2, 3], pa.int32()), "rows": pa.array(["a", "b", "c"])})
    with pytest.raises(ShardsmithError, match="output.format: text column 'rows' has the name of a field"):
        write_webdataset(table, str(tmp_path / "part-00000.tar"), sink, schema=_schema(table, {}))
    assert not list(tmp_path.iterdir())


def test_zstd_content_size_is_read_from_the_frame_header():
    for n in (0, 1, 255, 256, 65_791, 65_792, 1 << 20):
        data = bytes(range(256)) * (n // 256) + bytes(n % 256)
        assert zstd_content_size(zstd_compress(data)[:18]) == n
    assert zstd_content_size(b"\x1f\x8b\x08\x00\x00\x00") is None


# --- reading any range of rows ---------------------------------------------------------------------------------
def _text_table(n: int):
    rng = np.random.default_rng(3)
    return pa.table({"label": pa.array(rng.integers(0, 2, n), pa.int8()),
                     "x": pa.array(rng.standard_normal(n).astype(np.float32)),
                     "c": pa.array(np.arange(n, dtype=np.int32)),
                     "t": pa.array(["v" * int(k) for k in rng.integers(0, 40, n)])})


@pytest.mark.parametrize("per,comp,text", [(1, "none", False), (1, "none", True), (1, "gzip", True),
                                           (7, "none", True), (64, "zstd", True), (64, "gzip", False)])
def test_tar_shard_reads_any_range_of_rows(tmp_path, per, comp, text):
    """Per-row shards of one sample size (read by arithmetic) or of varying sizes (decoded whole),
    batched ones (by their index), plain, per-member zstd or whole-file gzip."""
    table = _text_table(1500) if text else _text_table(1500).drop(["t"])
    schema = _schema(table, {"label": "label", "x": "continuous", "c": "categorical"})
    sink = SimpleNamespace(webdataset_compression=comp, webdataset_rows_per_sample=per)
    path = write_webdataset(table, str(tmp_path / "part-00000.tar"), sink, schema=schema)["path"]
    triples = [(c.name, c.dtype, c.role) for c in schema.columns]
    rng = random.Random(per)
    ranges = [(0, 1500), (0, 1), (1499, 1500), (63, 65)] + [sorted(rng.sample(range(1501), 2)) for _ in range(20)]
    with open(path, "rb") as f:
        shard = TarShard(*_tar_bytes(f, path)[:2], triples, table.num_rows, path, in_memory=comp == "gzip")
        for a, b in ranges:
            got = shard.read(a, b, ["c", "x", "label"])
            for name in ("c", "x", "label"):
                np.testing.assert_array_equal(got[name], table.column(name).to_numpy()[a:b])
    assert shard.decoded is None or (per == 1 and (text or comp == "gzip"))


def test_a_batched_sample_in_the_wrong_place_fails_naming_the_shard(dataset_copy, monkeypatch):
    """Row ids are checked: a sample whose row.npy does not hold the rows its position says is refused
    (by the shard's sha256 first, by default; by the row ids with that check off)."""
    pqs, tar = _pairs(dataset_copy, "valid")[0]
    path = os.path.join(dataset_copy, tar["path"])
    with tarfile.open(path) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("row.npy"))
    data = bytearray(open(path, "rb").read())
    pos = member.offset_data + member.size - 8
    data[pos: pos + 8] = np.int64(10**9).tobytes()
    open(path, "wb").write(bytes(data))
    with pytest.raises(InputError, match=re.escape(path) + ": checksum mismatch"):
        list(ShardDataset(dataset_copy, split="valid", batch_size=BS, format="webdataset"))
    monkeypatch.setattr(readers, "CHECKSUMS", False)
    with pytest.raises(InputError, match=re.escape(path) + ".*does not hold rows"):
        list(ShardDataset(dataset_copy, split="valid", batch_size=BS, format="webdataset"))


# --- ShardDataset: the same batches from every format and layout ------------------------------------------------
def _batches(stage):
    return [{k: v.clone() for k, v in b.items()} for b in stage]


def _assert_same_batches(got, want):
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert list(g) == list(w)
        for name in w:
            assert g[name].dtype == w[name].dtype and torch.equal(g[name], w[name]), name


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_gives_the_parquet_batches(dataset_dir, layouts, layout):
    for kw in (dict(seed=5), dict(shuffle=False), dict(seed=8, columns=["C3", "label", "I2"], drop_last=True)):
        want = _batches(ShardDataset(dataset_dir, batch_size=BS, **kw))
        got = _batches(ShardDataset(layouts[layout], batch_size=BS, format="webdataset", **kw))
        _assert_same_batches(got, want)


def test_workers_read_the_tar_batches_in_the_parquet_order(dataset_dir, layouts):
    """With workers too (their order interleaves the workers' runs, the same for both formats)."""
    want = _batches(ShardLoader(ShardDataset(dataset_dir, batch_size=BS, seed=2), num_workers=2))
    got = _batches(ShardLoader(ShardDataset(layouts["batched-zstd"], batch_size=BS, seed=2, format="webdataset"),
                               num_workers=2))
    _assert_same_batches(got, want)


def test_a_state_moves_between_formats_layouts_and_world_sizes(dataset_dir, layouts):
    """Saved while reading Parquet on one rank, restored on per-row gzip tars (1 rank: the exact
    continuation) and on batched zstd tars (2 ranks: exactly the remaining rows); saved there,
    restored on batched tars of the default layout."""
    full = [batch_keys(b) for b in ShardDataset(dataset_dir, batch_size=BS, seed=4)]
    ds = ShardDataset(dataset_dir, batch_size=BS, seed=4)
    seen = [batch_keys(b) for b in itertools.islice(ds, 5)]
    state = json.loads(json.dumps(ds.state_dict()))
    rest = ShardDataset(layouts["per-row-gzip"], batch_size=BS, seed=4, format="webdataset")
    rest.load_state_dict(state)
    assert [k.tolist() for k in seen + [batch_keys(b) for b in rest]] == [k.tolist() for k in full]

    ranks = [ShardDataset(layouts["batched-zstd"], batch_size=BS, seed=4, format="webdataset", rank=r, world_size=2)
             for r in range(2)]
    for r in ranks:
        r.load_state_dict(state)
    iters = [iter(r) for r in ranks]
    step = [[batch_keys(next(it)) for it in iters] for _ in range(3)]  # 3 steps on each rank, then stop
    saved = ranks[0].state_dict()
    assert saved == ranks[1].state_dict()
    later = ShardDataset(dataset_dir, batch_size=BS, seed=4, format="webdataset")
    later.load_state_dict(json.loads(json.dumps(saved)))
    after = [batch_keys(b) for b in later]
    everything = set(np.concatenate(full).tolist())
    read = [k for b in seen + [k for s in step for k in s] + after for k in b.tolist()]
    assert set(read) == everything and len(read) == len(everything)  # every row once: 2 ranks x 3 steps, no padding


def test_a_state_of_another_input_is_refused(dataset_dir, tmp_path):
    state = ShardDataset(dataset_dir, batch_size=BS, seed=4).state_dict()
    raw = str(tmp_path / "raw")
    generate(24_000, raw, files=2, row_group_rows=4096, seed=1)
    other = compile_demo(str(tmp_path), raw=raw)
    with pytest.raises(ShardsmithError, match="state.dataset"):
        ShardDataset(other, batch_size=BS, seed=4, format="webdataset").load_state_dict(state)
