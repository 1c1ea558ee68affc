"""The GPU engine's side of identity by content, on a device: content digests computed on the device
equal the CPU engine's; the demo compiled with ``output.writer=cudf`` reads correctly with pyarrow,
polars, duckdb, HF ``datasets`` and ShardDataset and equals the CPU engine's output by content
digests; the plan's kernels are compiled while the cluster starts.

Marked ``gpu``: skipped where no GPU engine can run. CI runs them on the emulated GPU
(tests/fakegpu.py), where they check shardsmith's own code: the emulated cuDF writer is pyarrow
with other encoding choices (so the bytes differ as cuDF's do), and the kernels compiled ahead are
real NVRTC compiles that the emulated workers, running host builds, do not load."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.backends import gpu_unavailable_reason
from shardsmith.backends.arrow import table_digests
from shardsmith.compiler.config import compose
from shardsmith.ir import Column, Schema
from shardsmith.kernels import nvrtc
from shardsmith.runtime import compile_dataset
from shardsmith.shards.diff import ENGINE_TOLERANCE, compare
from shardsmith.shards.manifest import read_manifest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gpu_unavailable_reason() is not None,
                                                  reason=f"no GPU engine here: {gpu_unavailable_reason()}")]
HERE = Path(__file__).resolve().parent
SHARD_ROWS = 7000


def _sibling(name):
    spec = importlib.util.spec_from_file_location(f"_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_content_digests_on_the_device_match_the_cpu_engine():
    from shardsmith.backends import get_backend
    from shardsmith.backends.gpu import transfer

    gpu = get_backend("gpu")
    rng = np.random.default_rng(7)
    n = 40_000  # several 64 KiB blocks per column
    host = _sibling("test_kernels_host")
    x = rng.normal(size=n).astype(np.float32)
    x[::97], x[1::97] = np.nan, -0.0
    table = pa.table({
        "f32": pa.array(x, mask=rng.random(n) < 0.05),
        "f64": pa.array(rng.normal(size=n)),
        "i8": pa.array(rng.integers(-128, 128, n).astype(np.int8), mask=rng.random(n) < 0.1),
        "u64": pa.array(rng.integers(0, 2**64, n, dtype=np.uint64)),
        "b": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1),
        "s": pa.array(host._random_strings(rng, n), mask=rng.random(n) < 0.1),
        "bin": pa.array([v.encode() for v in host._random_strings(rng, n)]),
        "d": pa.array(rng.integers(-1000, 20000, n).astype(np.int32)).cast(pa.date32()),
    })
    dtypes = {"f32": "float32", "f64": "float64", "i8": "int8", "u64": "uint64", "b": "bool", "s": "string",
              "bin": "binary", "d": "date"}
    schema = Schema(tuple(Column(name, dtype) for name, dtype in dtypes.items()))
    want = table_digests(table, dtypes)
    frame = gpu.conform(transfer.table_to_frame(table), schema)
    assert gpu.content_digests(frame, schema) == want
    part = gpu.slice(frame, 1234, 30_000)  # a shard cut out of a partition: offsets into every buffer
    assert gpu.content_digests(part, schema) == table_digests(table.slice(1234, 30_000 - 1234), dtypes)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from shardsmith.demo import generate

    d = tmp_path_factory.mktemp("gpu-identity")
    generate(30_000, str(d / "raw"), files=3, row_group_rows=4096)
    return d


def _compile(demo, name, *overrides) -> dict:
    cfg = compose([f"source.paths=[{demo}/raw/*.parquet]", f"output.dir={demo}/{name}", "engine.cluster=inprocess",
                   f"output.shard_rows={SHARD_ROWS}", "output.row_group_rows=3000", *overrides])
    return read_manifest(compile_dataset(cfg, log=lambda *a: None).path)


@pytest.fixture(scope="module")
def written(demo):
    """The demo compiled by the GPU engine with cuDF's writer, and by the CPU engine."""
    return _compile(demo, "gpu-cudf", "engine.kind=gpu", "output.writer=cudf"), _compile(demo, "cpu", "engine.kind=cpu")


def _files(manifest, split="train"):
    return [os.path.join(manifest["_dir"], s["path"]) for s in manifest["splits"][split]["shards"]
            if s["format"] == "parquet"]


def _dtypes(manifest) -> dict:
    return {c["name"]: c["dtype"] for c in manifest["schema"]}


def _check(manifest, tables, dtypes) -> None:
    """Each shard as a reader gave it: the digests its manifest records (the values, every bit)."""
    entries = [s for s in manifest["splits"]["train"]["shards"] if s["format"] == "parquet"]
    assert len(tables) == len(entries) > 2
    for table, entry in zip(tables, entries):
        got = {name: f"{d:016x}" for name, d in table_digests(table, dtypes).items()}
        assert got == entry["content"]["columns"], entry["path"]


def test_the_cudf_writer_equals_the_cpu_engine_by_content(written):
    gpu_m, cpu_m = written
    assert {s["writer"] for sp in gpu_m["splits"].values() for s in sp["shards"]} == {"cudf"}
    report = compare(gpu_m, cpu_m, ENGINE_TOLERANCE)
    assert report.same, report.lines
    assert [s["rows"] for s in gpu_m["splits"]["train"]["shards"]] == \
        [s["rows"] for s in cpu_m["splits"]["train"]["shards"]]  # shard boundaries unchanged


def test_pyarrow_reads_the_cudf_shards(written):
    gpu_m, cpu_m = written
    tables = [pq.read_table(f) for f in _files(gpu_m)]
    _check(gpu_m, tables, _dtypes(gpu_m))
    cpu_schema = pq.read_table(_files(cpu_m)[0]).schema.remove_metadata()
    diff = [(f, cpu_schema.field(f.name)) for f in tables[0].schema.remove_metadata() if f != cpu_schema.field(f.name)]
    assert not diff and tables[0].schema.names == cpu_schema.names, f"fields differ (cudf, arrow): {diff[:3]}"
    md = pq.ParquetFile(_files(gpu_m)[0]).metadata
    assert md.num_row_groups == -(-SHARD_ROWS // 3000), f"{md.num_row_groups} row groups for row_group_rows=3000"
    codecs = {md.row_group(0).column(i).compression for i in range(md.num_columns)}
    assert codecs == {"ZSTD"}, f"column chunk codecs {sorted(codecs)} for output.compression=zstd"


def test_polars_reads_the_cudf_shards(written):
    pl = pytest.importorskip("polars")
    gpu_m, _ = written
    _check(gpu_m, [pl.read_parquet(f).to_arrow() for f in _files(gpu_m)], _dtypes(gpu_m))


def test_duckdb_reads_the_cudf_shards(written):
    duckdb = pytest.importorskip("duckdb")
    gpu_m, _ = written
    tables = []
    for f in _files(gpu_m):
        out = duckdb.sql(f"select * from read_parquet('{f}')").arrow()
        tables.append(out.read_all() if isinstance(out, pa.RecordBatchReader) else out)
    _check(gpu_m, tables, _dtypes(gpu_m))


def test_hf_datasets_reads_the_cudf_shards(written, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    gpu_m, _ = written
    tables = [datasets.Dataset.from_parquet(f, cache_dir=str(tmp_path / f"hf{i}")).with_format("arrow")[:]
              for i, f in enumerate(_files(gpu_m))]
    _check(gpu_m, tables, _dtypes(gpu_m))


def test_shard_dataset_reads_the_cudf_shards(written):
    pytest.importorskip("torch")
    from shardsmith.shards import ShardDataset

    gpu_m, cpu_m = written
    batches = [list(ShardDataset(m["_dir"], split="train", batch_size=1000, seed=3)) for m in (gpu_m, cpu_m)]
    assert sum(len(b["label"]) for b in batches[0]) == gpu_m["splits"]["train"]["rows"]
    for a, b in zip(*batches):  # the same order (seed, shard layout), the same values
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].dtype == b[name].dtype and a[name].equal(b[name]), name


def test_fast_mode_agrees_with_the_cpu_engine_within_its_tolerance(demo, written):
    """float_mode fast: recorded in the manifest; its floats differ from the CPU engine's in bits,
    within codegen.FAST_TOLERANCE (diff's default for it); every other column is the same."""
    _, cpu_m = written
    fast = _compile(demo, "gpu-fast", "engine.kind=gpu", "engine.float_mode=fast")
    assert fast["engine"]["float_mode"] == "fast"
    report = compare(fast, cpu_m)
    assert report.same and report.tolerated, report.lines
    floats = {c["name"] for c in cpu_m["schema"] if c["dtype"].startswith("float")}
    for a, b in zip(fast["splits"]["train"]["shards"], cpu_m["splits"]["train"]["shards"]):
        assert {c: d for c, d in a["content"]["columns"].items() if c not in floats} == \
            {c: d for c, d in b["content"]["columns"].items() if c not in floats}


@pytest.mark.skipif(nvrtc.unavailable_reason() is not None, reason=f"no NVRTC: {nvrtc.unavailable_reason()}")
def test_the_plans_kernels_compile_while_the_cluster_starts(demo, tmp_path, monkeypatch):
    """Plumbing under the emulation (its workers run host builds); on a GPU, the cubins the workers load."""
    from shardsmith.backends.gpu.compat import device_archs
    from shardsmith.runtime.driver import prepare
    from shardsmith.runtime.warmup import plan_sources

    monkeypatch.setenv("SHARDSMITH_KERNEL_CACHE", str(tmp_path / "kernels"))
    lines: list[str] = []
    cfg = compose([f"source.paths=[{demo}/raw/*.parquet]", f"output.dir={tmp_path}/out", "engine.kind=gpu",
                   "engine.cluster=local", "engine.n_workers=1", f"output.shard_rows={SHARD_ROWS}"])
    compile_dataset(cfg, log=lines.append)
    said = [x for x in lines if x.startswith("kernels compiled ahead while the cluster started")]
    assert len(said) == 1, lines
    assert re.search(r": 4 kernel source\(s\) x 1 architecture\(s\) .*: 4 compiled, 0 already cached", said[0]), said
    names = {p.name for p in (tmp_path / "kernels").glob("*.cubin")}
    arch = device_archs()[0]
    assert names >= {f"{s.sha256[:32]}-{arch}.cubin" for s in plan_sources(prepare(cfg).plan)}
