"""WebDataset shards of one row per sample (``rows_per_sample: 1``, the layout of shardsmith 0.1):
round trips through the real ``webdataset`` library and Python's tarfile. Batched samples:
test_wds_layouts.py."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from shardsmith.errors import ShardsmithError
from shardsmith.ir import Column, Schema
from shardsmith.shards import manifest as mf
from shardsmith.shards.webdataset import read_tar_columns, sample_layout, write_webdataset

from .conftest import compile_demo

SINK = SimpleNamespace(webdataset_compression="none", webdataset_rows_per_sample=1)


def _manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def test_compiled_tar_reads_natively_with_webdataset(layouts):
    dataset_dir = layouts["per-row"]
    manifest = _manifest(dataset_dir)
    schema = {c["name"]: c for c in manifest["schema"]}
    cont = [n for n, c in schema.items() if c["role"] == "continuous"]
    cat = [n for n, c in schema.items() if c["role"] == "categorical"]
    shards = manifest["splits"]["train"]["shards"]
    tars = [s for s in shards if s["format"] == "webdataset"]
    parquets = [s for s in shards if s["format"] == "parquet"]
    assert len(tars) == len(parquets) > 1
    for tar, pqs in zip(tars, parquets):
        table = pq.read_table(os.path.join(dataset_dir, pqs["path"]))
        samples = list(wds.WebDataset(os.path.join(dataset_dir, tar["path"]), shardshuffle=False).decode())
        assert len(samples) == tar["rows"] == table.num_rows
        for i in (0, 1, len(samples) // 2, len(samples) - 1):
            s = samples[i]
            assert "." not in s["__key__"]
            assert set(k for k in s if not k.startswith("__")) == {"cls", "continuous.npy", "categorical.npy", "json"}
            np.testing.assert_array_equal(s["continuous.npy"], [table.column(c)[i].as_py() for c in cont])
            np.testing.assert_array_equal(s["categorical.npy"], [table.column(c)[i].as_py() for c in cat])
            assert s["continuous.npy"].dtype == np.float32 and s["categorical.npy"].dtype == np.int32
            assert s["cls"] == table.column("label")[i].as_py()
            assert s["json"]["row"] == i and s["json"]["columns"]["continuous.npy"] == cont
        labels = np.array([s["cls"] for s in samples])
        np.testing.assert_array_equal(labels, table.column("label").to_numpy())


@pytest.mark.parametrize("layout,per_sample,count", [("per-row", 1, 4), ("batched", 1024, 5)])
def test_tar_members_are_plain_ustar_with_fixed_metadata(layouts, layout, per_sample, count):
    dataset_dir = layouts[layout]
    tar = next(s for s in _manifest(dataset_dir)["splits"]["valid"]["shards"] if s["format"] == "webdataset")
    with tarfile.open(os.path.join(dataset_dir, tar["path"])) as tf:
        members = tf.getmembers()
    assert len(members) == count * -(-tar["rows"] // per_sample)
    for m in members[:8] + members[-4:]:
        assert m.isfile() and m.mode == 0o444 and m.uid == m.gid == 0 and m.mtime == 0
        assert m.uname == m.gname == ""
        key, ext = m.name.split(".", 1)
        assert ext == ext.lower() and "/" not in m.name


def _dtype(t: pa.DataType) -> str:
    return "string" if pa.types.is_string(t) else np.dtype(t.to_pandas_dtype()).name


def _schema(table, roles):
    return Schema(tuple(Column(f.name, _dtype(f.type), roles.get(f.name, "other")) for f in table.schema))


def _table():
    return pa.table({"label": pa.array([1, 0, 1], pa.int8()),
                     "x": pa.array([0.5, None, -2.0], pa.float32()),
                     "c": pa.array([3, 4, 5], pa.int32()),
                     "name": pa.array(["a", "ü", None])})


def test_bytes_equal_what_tarfile_and_numpy_write(tmp_path):
    """An independent reference: the same members written with tarfile and np.save."""
    table = _table()
    schema = _schema(table, {"label": "label", "x": "continuous", "c": "categorical"})
    info = write_webdataset(table, str(tmp_path / "part-00000.tar"), SINK, schema=schema)
    ours = (tmp_path / "part-00000.tar").read_bytes()
    assert info["bytes"] == len(ours)
    jsons = [m for m in tarfile.open(tmp_path / "part-00000.tar").getmembers() if m.name.endswith(".json")]
    texts = [tarfile.open(tmp_path / "part-00000.tar").extractfile(m).read() for m in jsons]
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(3):
            key = f"part-00000_{i:09d}"

            def add(ext, data, key=key):
                ti = tarfile.TarInfo(f"{key}.{ext}")
                ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o444, 0, 0, "", ""
                tf.addfile(ti, io.BytesIO(data))

            add("cls", str(table.column("label")[i].as_py()).encode())
            for ext, col, dt in (("continuous.npy", "x", np.float32), ("categorical.npy", "c", np.int32)):
                buf = io.BytesIO()
                np.save(buf, np.array([table.column(col).to_numpy(zero_copy_only=False)[i]], dtype=dt))
                add(ext, buf.getvalue())
            add("json", texts[i])
    assert ours == ref.getvalue()
    doc = json.loads(texts[1])
    assert doc["name"] == "ü" and doc["key"] == "part-00000_000000001" and json.loads(texts[2])["name"] is None


def test_writes_are_deterministic_and_read_back_by_the_loader_parser(tmp_path):
    table = _table()
    schema = _schema(table, {"label": "label", "x": "continuous", "c": "categorical"})
    a = write_webdataset(table, str(tmp_path / "a" / "part-00001.tar"), SINK, schema=schema)
    b = write_webdataset(table, str(tmp_path / "b" / "part-00001.tar"), SINK, schema=schema)
    assert a["sha256"] == b["sha256"] and a["bytes"] == b["bytes"]
    layout = sample_layout([(c.name, c.dtype, c.role) for c in schema.columns])
    cols = read_tar_columns((tmp_path / "a" / "part-00001.tar").read_bytes(), layout, 3, "t")
    np.testing.assert_array_equal(cols["label"], [1, 0, 1])
    np.testing.assert_array_equal(cols["c"], [3, 4, 5])
    np.testing.assert_array_equal(cols["x"], np.array([0.5, np.nan, -2.0], np.float32))


def test_gzip_shards_are_deterministic_and_readable(tmp_path):
    table = _table()
    schema = _schema(table, {"label": "label", "x": "continuous", "c": "categorical"})
    sink = SimpleNamespace(webdataset_compression="gzip", webdataset_rows_per_sample=1)
    a = write_webdataset(table, str(tmp_path / "a" / "part-00000.tar"), sink, schema=schema)
    b = write_webdataset(table, str(tmp_path / "b" / "part-00000.tar"), sink, schema=schema)
    assert a["path"].endswith(".tar.gz") and a["sha256"] == b["sha256"]
    raw = (tmp_path / "a" / "part-00000.tar.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    plain = write_webdataset(table, str(tmp_path / "c" / "part-00000.tar"), SINK, schema=schema)
    assert gzip.decompress(raw) == (tmp_path / "c" / "part-00000.tar").read_bytes() and plain["bytes"] > 0
    samples = list(wds.WebDataset(a["path"], shardshuffle=False).decode())
    assert [s["cls"] for s in samples] == [1, 0, 1]


def test_compile_with_the_deprecated_gzip_key_lists_tar_gz_shards_with_checksums(tmp_path, caplog):
    out = compile_demo(str(tmp_path), rows=3000, extra=("output.webdataset_compression=gzip",
                                                        "output.webdataset.rows_per_sample=1"))
    assert "output.webdataset_compression is deprecated; use output.webdataset.compression" in caplog.text
    manifest = mf.read_manifest(out)
    assert manifest["config"]["resolved"]["output"]["webdataset"]["compression"] == "gzip"
    tars = [s for _, s in mf.iter_shards(manifest) if s["format"] == "webdataset"]
    assert tars and all(s["path"].endswith(".tar.gz") for s in tars)
    assert mf.verify(manifest) == []
    n = sum(1 for _ in wds.WebDataset(os.path.join(out, tars[0]["path"]), shardshuffle=False))
    assert n == tars[0]["rows"]


@pytest.mark.parametrize("extra", [("output.webdataset.rows_per_sample=1",), (),
                                   ("output.webdataset.rows_per_sample=500", "output.webdataset.compression=zstd"),
                                   ("output.webdataset.compression=gzip",)])
def test_same_config_twice_gives_identical_tar_shards(tmp_path, extra):
    a = mf.read_manifest(compile_demo(str(tmp_path / "a"), rows=3000, extra=extra))
    b = mf.read_manifest(compile_demo(str(tmp_path / "b"), rows=3000, extra=extra))
    sha = lambda m: [s["sha256"] for _, s in mf.iter_shards(m) if s["format"] == "webdataset"]  # noqa: E731
    assert sha(a) == sha(b) and len(sha(a)) >= 3
    assert mf.verify(a) == []


def test_integer_nulls_fail_naming_the_column(tmp_path):
    table = pa.table({"label": pa.array([1, None], pa.int64()), "c": pa.array([1, 2], pa.int32())})
    schema = _schema(table, {"label": "label", "c": "categorical"})
    with pytest.raises(ShardsmithError, match="'label' has 1 null"):
        write_webdataset(table, str(tmp_path / "part-00000.tar"), SINK, schema=schema)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_columns_differing_only_in_case_are_refused():
    with pytest.raises(ShardsmithError, match="differ only in case"):
        sample_layout([("a", "string", "other"), ("A", "string", "other")])


def test_float_or_several_labels_go_to_label_npy():
    layout = sample_layout([("y", "float32", "label"), ("x", "float32", "continuous")])
    assert [m.ext for m in layout] == ["label.npy", "continuous.npy", "json"]
    layout = sample_layout([("y1", "int8", "label"), ("y2", "int64", "label")])
    assert layout[0].ext == "label.npy" and layout[0].dtype == "int64"
