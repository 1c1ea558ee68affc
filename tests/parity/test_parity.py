"""One suite for every engine: each op, and the demo pipeline end to end, compiled with the engine
under test (the ``backend`` fixture: cpu always, gpu where usable) and checked against naive
references written here, value by value. Integer, categorical and hash columns must be identical;
floats agree within 1e-6 relative. The GPU engine is also compared with the CPU engine directly, by
content digests (kernels/digest.py, as ``shardsmith diff`` does): the digests of every integer, id,
hash and split column must be equal shard by shard; a float column's may differ only where its
values, read back, agree within 1e-6 relative (1e-7 absolute). With ``output.writer=arrow`` the
shards' sha256 must match too (the same bytes); with the GPU's own writer (cuDF) only the content."""

from __future__ import annotations

import collections
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from shardsmith.compiler.config import compose, from_dict
from shardsmith.ops.categorical import FIRST_ID, NULL_ID, OOV_ID
from shardsmith.runtime import compile_dataset
from shardsmith.shards.diff import ENGINE_TOLERANCE, compare, shards_of
from shardsmith.shards.manifest import read_manifest
from shardsmith.shards.state import load_states

RTOL = 1e-6
NULL_SEED_XOR = 0x9E3779B97F4A7C15


def compile_table(tmp_path, table, graph, backend, name="t", split=None, files=1, expect=None, engine=None,
                  tables=None, partition_bytes="64MB", **output):
    """Compile ``table`` (split into ``files`` Parquet files) with ``graph`` (and ``expect``, side
    ``tables``) on ``backend`` (with ``engine``'s settings); returns (each split's rows as one table,
    the manifest, the output directory)."""
    raw = tmp_path / f"raw-{name}"
    raw.mkdir(exist_ok=True)
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i in range(files):
        pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), raw / f"part-{i}.parquet",
                       row_group_size=max(1, table.num_rows // (files * 3) or 1))
    out = tmp_path / f"out-{name}-{backend}"
    cfg = from_dict({"name": name, "source": {"paths": [str(raw / "*.parquet")]}, "graph": graph,
                     "tables": tables or {},
                     "split": split or {"fractions": {"train": 1.0}, "fit_on": None},
                     "output": {"dir": str(out), "shard_rows": output.pop("shard_rows", 10**7), **output},
                     "engine": {"kind": backend, "cluster": "inprocess", "partition_bytes": partition_bytes,
                                **(engine or {})},
                     "expect": expect or []})
    manifest = compile_dataset(cfg, log=lambda *a: None).manifest
    return read_splits(out, manifest), manifest, out


def read_splits(out, manifest) -> dict:
    tables = {}
    for name, info in manifest["splits"].items():
        parts = [pq.read_table(out / s["path"]) for s in info["shards"] if s["format"] == "parquet"]
        tables[name] = pa.concat_tables(parts) if parts else None
    return tables


def _column(table, name):
    return table[name].to_pylist()


def _close(got, want, rtol=RTOL):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None or (isinstance(w, float) and math.isnan(w)):
            assert g is None, f"row {i}: expected null, got {g}"
        else:
            assert g is not None and math.isclose(g, w, rel_tol=rtol, abs_tol=1e-12), f"row {i}: {g} != {w}"


def _f32(v):
    return float(np.float32(v))


# --- continuous ops ----------------------------------------------------------------------------------
@pytest.fixture
def numbers():
    rng = np.random.default_rng(0)
    n = 3000
    x = np.exp(rng.normal(1, 1.5, n)) - 2.0
    x[::17] = np.nan
    return pa.table({"x": pa.array(x.astype(np.float32), mask=rng.random(n) < 0.1),
                     "y": pa.array(rng.normal(0, 5, n)), "k": pa.array(rng.integers(-50, 50, n).astype(np.int16),
                                                                       mask=rng.random(n) < 0.1)})


def test_fill_clip_log1p_normalize(tmp_path, backend, numbers):
    graph = [{"op": "fill_missing", "cols": ["x"], "value": 0.5}, {"op": "clip", "cols": ["x"], "lower": -0.5},
             {"op": "log1p", "cols": ["x"]}, {"op": "normalize", "cols": ["x"]}]
    got, manifest, out = compile_table(tmp_path, numbers, graph, backend)
    steps = [_f32(max(_f32(0.5 if v is None or math.isnan(v) else v), -0.5)) for v in _column(numbers, "x")]
    logs = [_f32(math.log1p(v)) for v in steps]
    mean, std = np.mean(np.float64(logs)), np.std(np.float64(logs))
    state = load_states(str(out / "state"))["graph[3]"]["x"]
    assert math.isclose(state["mean"], mean, rel_tol=1e-12) and math.isclose(state["std"], std, rel_tol=1e-12)
    _close(_column(got["train"], "x"), [_f32((v - state["mean"]) / state["std"]) for v in logs])
    assert got["train"].schema.field("x").type == pa.float32()


def test_one_kernel_keeps_each_steps_parameters(tmp_path, backend):
    """Two clips with different bounds on columns of one dtype share a kernel; each keeps its bound."""
    table = pa.table({"a": [-5.0, 5.0, None], "b": [-5.0, 5.0, 0.5]})
    graph = [{"op": "clip", "cols": ["a"], "lower": 0.0}, {"op": "clip", "cols": ["b"], "lower": 1.0}]
    got, _, _ = compile_table(tmp_path, table, graph, backend)
    assert _column(got["train"], "a") == [0.0, 5.0, None]
    assert _column(got["train"], "b") == [1.0, 5.0, 1.0]


def test_normalize_minmax_and_integer_fills(tmp_path, backend, numbers):
    graph = [{"op": "normalize_minmax", "cols": ["y"], "out": ["y01"]},
             {"op": "fill_missing", "cols": ["k"], "strategy": "mean"}, {"op": "clip", "cols": ["k"], "upper": 30}]
    got, _, out = compile_table(tmp_path, numbers, graph, backend)
    y = _column(numbers, "y")
    lo, hi = min(y), max(y)
    _close(_column(got["train"], "y01"), [(v - lo) / (hi - lo) for v in y])
    ks = [v for v in _column(numbers, "k") if v is not None]
    fill = float(np.rint(sum(ks) / len(ks)))  # an int16 column stays int16: the mean rounds half to even
    assert _column(got["train"], "k") == [int(min(fill if v is None else v, 30)) for v in _column(numbers, "k")]
    assert got["train"].schema.field("k").type == pa.int16()


def test_bucketize_given_and_fitted(tmp_path, backend, numbers):
    graph = [{"op": "bucketize", "cols": ["y"], "boundaries": [-3.0, 0.0, 0.5, 4.0], "out": ["yb"]},
             {"op": "bucketize", "cols": ["x"], "quantiles": 4, "out": ["xq"]}]
    got, _, out = compile_table(tmp_path, numbers, graph, backend)
    assert _column(got["train"], "yb") == [sum(b <= v for b in (-3.0, 0.0, 0.5, 4.0)) for v in _column(numbers, "y")]
    bounds = load_states(str(out / "state"))["graph[1]"]["x"]["boundaries"]
    assert len(bounds) == 3
    want = [None if v is None or math.isnan(v) else sum(b <= v for b in bounds) for v in _column(numbers, "x")]
    assert _column(got["train"], "xq") == want


# --- categorical ops ---------------------------------------------------------------------------------
@pytest.fixture
def categories():
    rng = np.random.default_rng(1)
    n = 4000
    ids = np.minimum(np.floor(np.exp(rng.random(n) * math.log(200))), 199).astype(np.int64)
    strings = [f"c{i}" if i % 5 else "é" * int(i % 7) for i in ids]
    floats = (ids % 13).astype(np.float64) - 6.0
    floats[ids % 29 == 0] = -0.0
    floats[ids % 31 == 0] = np.nan
    return pa.table({"i": pa.array(ids * 1_000_003 - 7, mask=rng.random(n) < 0.05),
                     "s": pa.array(strings, mask=rng.random(n) < 0.05),
                     "f": pa.array(floats, mask=rng.random(n) < 0.05),
                     "b": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.05),
                     "u": pa.array(rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False))})


def _naive_ids(values, freq_threshold=0, max_size=None):
    def key(v):  # Arrow tells floats apart by their bits
        return ("f", np.float64(v).view(np.uint64).item()) if isinstance(v, float) else v

    counts, first = {}, {}
    for v in values:
        if v is not None:
            counts[key(v)] = counts.get(key(v), 0) + 1
            first.setdefault(key(v), v)
    order = sorted(counts, key=lambda k: (-counts[k], _sort_value(first[k])))
    vocab = [k for k in order if counts[k] >= max(freq_threshold, 1)][:max_size]
    pos = {k: i for i, k in enumerate(vocab)}
    return [NULL_ID if v is None else pos[key(v)] + FIRST_ID if key(v) in pos else OOV_ID for v in values]


def _sort_value(v):
    if isinstance(v, str):
        return (0, v.encode())
    if isinstance(v, float):
        return (1, float("inf") if math.isnan(v) else v, math.copysign(1, v))
    return (1, v, 0)


@pytest.mark.parametrize("col", ["i", "s", "b", "u"])
def test_categorify(tmp_path, backend, categories, col):
    graph = [{"op": "categorify", "cols": [col], "freq_threshold": 3, "max_size": 50}]
    got, manifest, _ = compile_table(tmp_path, categories, graph, backend, name=f"c{col}")
    assert _column(got["train"], col) == _naive_ids(_column(categories, col), 3, 50)


def test_categorify_floats_by_bits(tmp_path, backend, categories):
    """-0.0 and 0.0 are different values, as on the CPU (Arrow's value_counts / index_in)."""
    got, _, _ = compile_table(tmp_path, categories, [{"op": "categorify", "cols": ["f"]}], backend)
    values = _column(categories, "f")
    ids = _column(got["train"], "f")
    by_value = {}
    for v, i in zip(values, ids):
        k = None if v is None else np.float64(v).view(np.uint64).item()
        assert by_value.setdefault(k, i) == i
    assert by_value[np.float64(-0.0).view(np.uint64).item()] != by_value[np.float64(0.0).view(np.uint64).item()]


def _xxh(value, seed):
    seed &= (1 << 64) - 1
    if value is None:
        return xxhash.xxh64_intdigest(b"", seed ^ NULL_SEED_XOR)
    if isinstance(value, str):
        return xxhash.xxh64_intdigest(value.encode(), seed)
    if isinstance(value, float):
        word = 0x7FF8000000000000 if math.isnan(value) else np.float64(value + 0.0).view(np.uint64).item()
    else:
        word = int(value) & ((1 << 64) - 1)
    return xxhash.xxh64_intdigest(word.to_bytes(8, "little"), seed)


@pytest.mark.parametrize("col", ["i", "s", "f", "b", "u"])
def test_hash_bucket(tmp_path, backend, categories, col):
    graph = [{"op": "hash_bucket", "cols": [col], "num_buckets": 1000, "seed": 123, "out": ["h"]}]
    got, _, _ = compile_table(tmp_path, categories, graph, backend, name=f"h{col}")
    assert _column(got["train"], "h") == [_xxh(v, 123) % 1000 for v in _column(categories, col)]


def test_hashed_cross(tmp_path, backend, categories):
    graph = [{"op": "hashed_cross", "cols": ["s", "i", "f"], "num_buckets": 2**33, "seed": 5, "out": "x"}]
    got, _, _ = compile_table(tmp_path, categories, graph, backend)
    want = []
    for s, i, f in zip(*(_column(categories, c) for c in ("s", "i", "f"))):
        want.append(_xxh(f, _xxh(i, _xxh(s, 5))) % 2**33)
    assert _column(got["train"], "x") == want
    assert got["train"].schema.field("x").type == pa.int64()


# --- rows and columns ------------------------------------------------------------------------------
def test_filter_rename_drop(tmp_path, backend, categories):
    graph = [{"op": "filter", "expr": "(i > 5000000 and s != 'c7') or is_null(f) or b"},
             {"op": "rename", "mapping": {"s": "name"}}, {"op": "drop", "cols": ["u", "b"]}]
    got, manifest, _ = compile_table(tmp_path, categories, graph, backend)
    kept = []
    for i, s, f, b in zip(*(_column(categories, c) for c in ("i", "s", "f", "b"))):
        left = None if i is None or s is None else (i > 5_000_000 and s != "c7")
        if i is not None and i <= 5_000_000:
            left = False
        if s == "c7":
            left = False
        parts = [left, f is None or (isinstance(f, float) and math.isnan(f)), b]
        kept.append(True in parts)  # Kleene or: true if any part is true
    want = [v for v, k in zip(_column(categories, "s"), kept) if k]
    assert got["train"].column_names == ["i", "name", "f"]
    assert _column(got["train"], "name") == want
    assert manifest["rows"]["filtered"] == categories.num_rows - len(want)


def test_expectations_count_the_same_on_every_engine(tmp_path, backend, categories):
    """Row checks as predicates, quarantine, nulls, exact means and distinct values: the counts a
    naive reading of the table gives, on every engine."""
    expect = [{"col": "i", "check": "not_null", "at": "input", "severity": "warn"},
              {"col": "f", "check": "between", "min": -3, "max": 3, "at": "input", "severity": "quarantine"},
              {"col": "s", "check": "in_set", "values": ["c1", "c2"], "at": "input", "severity": "warn"},
              {"check": "expr", "expr": "i > 5000000 or b", "at": "input", "severity": "warn"},
              {"col": "s", "check": "distinct_count", "min": 1, "at": "input"},
              {"col": "f", "check": "unique", "at": "input", "severity": "warn"},
              {"col": "i", "check": "max_null_fraction", "max": 1.0},
              {"col": "f", "check": "mean_between", "min": -10, "max": 10}]
    _, manifest, _ = compile_table(tmp_path, categories, [], backend, expect=expect, files=2)
    obs = [r["observed"] for r in manifest["quality"]["expectations"]]
    i, s, f, b = (_column(categories, c) for c in ("i", "s", "f", "b"))
    present = [v is not None and not math.isnan(v) for v in f]
    outside = [p and (v < -3 or v > 3) for p, v in zip(present, f)]
    assert obs[0]["failing"] == sum(v is None for v in i)
    assert obs[1]["failing"] == obs[1]["quarantined"] == manifest["rows"]["quarantined"] == sum(outside)
    assert obs[2]["failing"] == sum(v is not None and v not in ("c1", "c2") for v in s)
    truth = [True if (a is not None and a > 5_000_000) or c is True else
             None if a is None or c is None else False for a, c in zip(i, b)]
    assert obs[3]["failing"] == sum(t is False for t in truth)
    assert obs[4]["distinct"] == len({v for v in s if v is not None})
    counts = collections.Counter(v + 0.0 for v, p in zip(f, present) if p)
    assert (obs[5]["distinct"], obs[5]["duplicated_values"]) == (len(counts), sum(c > 1 for c in counts.values()))
    kept = [k for k, o in zip(i, outside) if not o]
    assert (obs[6]["rows"], obs[6]["nulls"]) == (len(kept), sum(v is None for v in kept))
    values = [v for v, p, o in zip(f, present, outside) if p and not o]
    assert obs[7]["count"] == len(values) and math.isclose(obs[7]["mean"], math.fsum(values) / len(values),
                                                           rel_tol=1e-15)


def test_split_by_key_and_by_row(tmp_path, backend, categories):
    split = {"key": "s", "seed": 9, "fractions": {"train": 0.5, "test": 0.5}, "fit_on": None}
    got, _, _ = compile_table(tmp_path, categories, [], backend, split=split, name="bykey")
    want_test = [v for v in _column(categories, "s") if (_xxh(v, 9) >> 11) >= 2**52]
    assert _column(got["test"], "s") == want_test
    split = {"seed": 3, "fractions": {"train": 0.7, "valid": 0.3}, "fit_on": None}
    got, _, _ = compile_table(tmp_path, categories, [], backend, split=split, name="byrow", files=2)
    n0 = categories.num_rows // 2
    seeds = [xxhash.xxh64_intdigest(f"part-{f}.parquet".encode(), 3) for f in (0, 1)]
    valid = [i for i in range(categories.num_rows)
             if (_xxh(i if i < n0 else i - n0, seeds[0 if i < n0 else 1]) >> 11) >= round(0.7 * 2**53)]
    assert _column(got["valid"], "i") == [categories["i"][k].as_py() for k in valid]


# --- casts -------------------------------------------------------------------------------------------
@pytest.fixture
def castable():
    return pa.table({"f": pa.array([1.0, 2.5, None, -3.0, 1e10, float("nan")]),
                     "s": pa.array(["1", "x", None, "-3", "2.5", "7"]),
                     "i": pa.array([1, 300, None, -1, 0, 127], pa.int32())})


def test_casts_with_null_on_error(tmp_path, backend, castable):
    graph = [{"op": "cast", "cols": ["f", "s", "i"], "dtype": "int8", "on_error": "null", "out": ["fi", "si", "ii"]},
             {"op": "cast", "cols": ["i"], "dtype": "string", "out": ["istr"]},
             {"op": "cast", "cols": ["i"], "dtype": "bool", "out": ["ib"]}]
    got, _, _ = compile_table(tmp_path, castable, graph, backend)
    t = got["train"]
    assert _column(t, "fi") == [1, None, None, -3, None, None]
    assert _column(t, "si") == [1, None, None, -3, None, 7]
    assert _column(t, "ii") == [1, None, None, -1, 0, 127]
    assert _column(t, "istr") == ["1", "300", None, "-1", "0", "127"]
    assert _column(t, "ib") == [True, True, None, True, False, True]


def test_cast_quarantine_and_fail(tmp_path, backend, castable):
    graph = [{"op": "cast", "cols": ["f"], "dtype": "int32", "on_error": "quarantine"}]
    got, manifest, out = compile_table(tmp_path, castable, graph, backend, name="q")
    assert _column(got["train"], "f") == [1, None, -3]
    assert manifest["rows"]["quarantined"] == 3
    q = pa.concat_tables([pq.read_table(out / s["path"]) for s in manifest["quarantine"]["shards"]])
    assert sorted(q["_value"].to_pylist()) == sorted(["2.5", "10000000000.0", "nan"])
    assert set(q["_reason"].to_pylist()) == {"cannot cast to int32"}
    from shardsmith.errors import ShardsmithError

    with pytest.raises(ShardsmithError, match=r"column 'f': cannot cast 2\.5 to int32 \(row 1;"):
        compile_table(tmp_path, castable, [{"op": "cast", "cols": ["f"], "dtype": "int32"}], backend, name="fail")


# --- the demo pipeline end to end ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from shardsmith.demo import generate

    d = tmp_path_factory.mktemp("demo")
    generate(30_000, str(d / "raw"), files=3, row_group_rows=4096)
    return d


def _demo(demo, backend, name, *overrides):
    cfg = compose([f"source.paths=[{demo}/raw/*.parquet]", f"output.dir={demo}/{name}-{backend}",
                   f"engine.kind={backend}", "engine.cluster=inprocess", "output.shard_rows=7000", *overrides])
    manifest = compile_dataset(cfg, log=lambda *a: None).manifest
    return manifest, read_splits(demo / f"{name}-{backend}", manifest)


@pytest.fixture(scope="module")
def demo_on_cpu(demo):
    return _demo(demo, "cpu", "ref", "engine.partition_bytes=128MB")


def assert_same_content(got_dir, ref_dir) -> None:
    """The content comparison of the GPU-vs-CPU checks: non-float columns' digests equal, shard
    by shard; floats equal or (read back) within the documented tolerance."""
    got, ref = read_manifest(str(got_dir)), read_manifest(str(ref_dir))
    report = compare(got, ref, ENGINE_TOLERANCE)
    assert report.same, report.lines
    floats = {c["name"] for c in ref["schema"] if c["dtype"].startswith("float")}
    for name in ref["splits"]:
        for a, b in zip(shards_of(got["splits"][name]), shards_of(ref["splits"][name])):
            for col, d in b["content"]["columns"].items():
                assert col in floats or a["content"]["columns"][col] == d, f"{name}: {col}"


def test_demo_pipeline_matches_the_cpu_engine(demo, demo_on_cpu, backend):
    """On the CPU with other partitions (a determinism check); on the GPU against the CPU engine."""
    manifest, splits = _demo(demo, backend, "demo", "engine.partition_bytes=1MB" if backend == "cpu" else
                             "engine.partition_bytes=64MB")
    ref_manifest, ref = demo_on_cpu
    assert_same_content(demo / f"demo-{backend}", demo / "ref-cpu")
    if backend == "cpu":  # one engine, one writer: the same bytes
        assert manifest["content"] == ref_manifest["content"]
    assert manifest["rows"] == ref_manifest["rows"]
    assert manifest["schema"] == ref_manifest["schema"]
    for name, table in ref.items():
        got = splits[name]
        assert got.schema == table.schema
        for col in table.column_names:
            if pa.types.is_floating(table.schema.field(col).type):
                a, b = got[col].to_numpy(zero_copy_only=False), table[col].to_numpy(zero_copy_only=False)
                assert (np.isnan(a) == np.isnan(b)).all()
                np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7, err_msg=col)
            else:
                assert got[col].equals(table[col]), f"{name}.{col} differs"


def test_integer_only_demo_shards_are_byte_identical(demo, demo_on_cpu, backend):
    """The demo data through hashing, categorify and quantile buckets only (no float outputs): with
    the arrow writer the shards must be the same bytes whatever the engine (and the partitioning);
    with the engine's own writer (cuDF on the GPU) the same content, every digest equal."""
    cfg_overrides = ["engine.partition_bytes=1MB" if backend == "cpu" else "engine.partition_bytes=64MB"]
    ref, _ = _demo(demo, "cpu", "ints-ref", *_demo_graph_without_floats())
    got, _ = _demo(demo, backend, "ints", *_demo_graph_without_floats(), *cfg_overrides, "output.writer=arrow")
    shas = lambda m: [(s["path"], s["sha256"]) for split in m["splits"].values() for s in split["shards"]]  # noqa: E731
    assert shas(got) == shas(ref) and len(shas(ref)) > 3
    own, _ = _demo(demo, backend, "ints-own", *_demo_graph_without_floats(), *cfg_overrides)
    contents = lambda m: [(s["path"], s["content"]) for sp in m["splits"].values() for s in sp["shards"]]  # noqa: E731
    assert contents(own) == contents(ref) and own["content"] == ref["content"]
    assert {s["writer"] for sp in own["splits"].values() for s in sp["shards"]} == \
        {"cudf" if backend == "gpu" else "arrow"}


def _demo_graph_without_floats():
    return ["graph=[{op: hashed_cross, cols: [C1, C2], num_buckets: 100000, out: C1_x_C2}, "
            "{op: categorify, cols: ['C?', 'C??'], freq_threshold: 3}, "
            "{op: bucketize, cols: [I1], quantiles: 8, out: [I1q]}, "
            "{op: hash_bucket, cols: [C3], num_buckets: 77, out: [C3h]}, {op: drop, cols: ['I*']}]"]


def test_a_local_cluster_writes_the_same_shards(demo, backend):
    """The engine as users run it: a Dask cluster (LocalCUDACluster for the GPU), against the
    in-process CPU compile of the integer-only pipeline: the same content (the same bytes on the
    CPU; the GPU writes with cuDF)."""
    ref, _ = _demo(demo, "cpu", "ints-ref", *_demo_graph_without_floats())
    workers = "engine.n_workers=1" if backend == "gpu" else "engine.n_workers=2"
    cfg = compose([f"source.paths=[{demo}/raw/*.parquet]", f"output.dir={demo}/cluster-{backend}",
                   f"engine.kind={backend}", "engine.cluster=local", workers, "output.shard_rows=7000",
                   "engine.partition_bytes=1MB", *_demo_graph_without_floats()])
    got = compile_dataset(cfg, log=lambda *a: None).manifest
    shas = lambda m: [(s["path"], s["sha256"]) for split in m["splits"].values() for s in split["shards"]]  # noqa: E731
    assert got["engine"]["executor"] == "dask"
    assert got["content"] == ref["content"]  # the same content: every digest
    if backend == "cpu":  # and on one engine and writer, the same bytes
        assert shas(got) == shas(ref)
