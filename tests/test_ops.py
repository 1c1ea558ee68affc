"""Every op end to end through the real compiler, against a naive per-row Python reference."""

from __future__ import annotations

import math
import os
from collections import Counter
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from shardsmith.compiler.config import from_dict
from shardsmith.kernels.xxhash64 import NULL_SEED_XOR
from shardsmith.runtime import compile_dataset

N = 3000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(11)
    x = rng.lognormal(1, 2, N).round(2)
    x[rng.random(N) < 0.1] = np.nan
    x[:5] = [-3.0, -1.0, 0.0, -0.0, 1e6]
    xnull = rng.random(N) < 0.08
    k = rng.integers(-20, 60, N)
    s = np.array([f"v{int(v)}" for v in rng.zipf(1.6, N) % 50], dtype=object)
    s_null = rng.random(N) < 0.05
    return pa.table({
        "x": pa.array(x.astype(np.float32), mask=xnull),
        "k": pa.array(k, type=pa.int64()),
        "s": pa.array(list(s), mask=s_null, type=pa.string()),
        "num": pa.array([str(v) if i % 97 else f"bad{i}" for i, v in enumerate(k)], type=pa.string()),
    })


@pytest.fixture(scope="module")
def source(table, tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("ops")
    pq.write_table(table.slice(0, 1700), d / "a.parquet", row_group_size=500)
    pq.write_table(table.slice(1700), d / "b.parquet", row_group_size=400)
    return str(d / "*.parquet")


def compile_graph(source, tmp_path, graph, cpu_kernels="auto", **extra):
    raw = {"name": "t", "source": {"paths": [source]}, "graph": graph,
           "split": {"fractions": {"train": 1.0}, "fit_on": None},
           "output": {"dir": str(tmp_path / "out"), "shard_rows": 1000},
           "engine": {"cluster": "inprocess", "cpu_kernels": cpu_kernels}}
    for k, v in extra.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    res = compile_dataset(from_dict(raw), log=lambda *_: None)
    root = os.path.dirname(res.path)
    parts = [pq.read_table(os.path.join(root, s["path"])) for s in res.manifest["splits"]["train"]["shards"]]
    return pa.concat_tables(parts), res


def values(table, col):
    """Python values with None for null and NaN."""
    out = []
    for v in table[col].to_pylist():
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return out


def f32(v):
    return None if v is None else float(np.float32(v))


def test_fill_clip_log1p_constant_chain(source, table, tmp_path, cpu_kernels):
    graph = [{"op": "fill_missing", "cols": ["x"], "value": -2.5},
             {"op": "clip", "cols": ["x"], "lower": -1, "upper": 5000},
             {"op": "log1p", "cols": ["x"]}]
    out, _ = compile_graph(source, tmp_path, graph, cpu_kernels)
    want = []
    for v in values(table, "x"):
        v = f32(-2.5 if v is None else v)
        v = f32(min(max(v, -1.0), 5000.0))
        want.append(f32(math.log1p(v)) if v > -1 else float("nan"))  # log1p(-1) = -inf: missing (null)
    assert out["x"].type == pa.float32()
    np.testing.assert_allclose(np.array(out["x"].to_pylist(), dtype=np.float64), want, rtol=1e-6)


def test_fill_mean_and_median_are_fitted(source, table, tmp_path, cpu_kernels):
    graph = [{"op": "fill_missing", "cols": ["x"], "strategy": "mean", "out": ["xmean"]},
             {"op": "fill_missing", "cols": ["x"], "strategy": "median"}]
    out, _ = compile_graph(source, tmp_path, graph, cpu_kernels, stats={"quantile_bits": 52})
    present = [v for v in values(table, "x") if v is not None]
    mean = float(sum(Fraction(v) for v in present) / len(present))
    median = sorted(present)[math.ceil(len(present) / 2) - 1]  # the lower median
    for before, m1, m2 in zip(values(table, "x"), values(out, "xmean"), values(out, "x")):
        assert m1 == (f32(mean) if before is None else before)
        assert m2 == (median if before is None else before)


def test_normalize_and_minmax(source, table, tmp_path, cpu_kernels):
    graph = [{"op": "fill_missing", "cols": ["x"], "value": 0},
             {"op": "normalize", "cols": ["x"]},
             {"op": "normalize_minmax", "cols": ["k"]}]
    out, _ = compile_graph(source, tmp_path, graph, cpu_kernels)
    xs = [f32(0.0 if v is None else v) for v in values(table, "x")]
    mean = sum(Fraction(v) for v in xs) / len(xs)
    var = sum(Fraction(v) ** 2 for v in xs) / len(xs) - mean**2
    std = math.sqrt(float(var))
    assert values(out, "x") == [f32((v - float(mean)) / std) for v in xs]
    ks = table["k"].to_pylist()
    lo, hi = min(ks), max(ks)
    assert values(out, "k") == [f32((v - lo) / (hi - lo)) for v in ks]
    assert out["k"].type == pa.float32()


def test_bucketize_given_and_quantiles(source, table, tmp_path, cpu_kernels):
    graph = [{"op": "bucketize", "cols": ["k"], "boundaries": [0, 10, 20.5]},
             {"op": "bucketize", "cols": ["x"], "quantiles": 4, "out": ["xq"]}]
    out, res = compile_graph(source, tmp_path, graph, cpu_kernels)
    assert out["k"].to_pylist() == [sum(b <= v for b in (0, 10, 20.5)) for v in table["k"].to_pylist()]
    xs = sorted(v for v in values(table, "x") if v is not None)
    bounds = sorted({xs[math.ceil(q * len(xs)) - 1] for q in (Fraction(1, 4), Fraction(2, 4), Fraction(3, 4))})
    want = [None if v is None else sum(b <= v for b in bounds) for v in values(table, "x")]
    assert out["xq"].to_pylist() == want
    card = {c["name"]: c.get("cardinality") for c in res.manifest["schema"]}
    assert card["k"] == 4 and card["xq"] == len(bounds) + 1


@pytest.mark.parametrize("threshold,max_size", [(0, None), (5, None), (1, 7)])
def test_categorify_ids_by_frequency(source, table, tmp_path, threshold, max_size, cpu_kernels):
    graph = [{"op": "categorify", "cols": ["s", "k"], "freq_threshold": threshold,
              **({"max_size": max_size} if max_size else {})}]
    out, res = compile_graph(source, tmp_path, graph, cpu_kernels)
    for col in ("s", "k"):
        raw = table[col].to_pylist()
        counts = Counter(v for v in raw if v is not None)
        vocab = sorted((v for v, c in counts.items() if c >= max(threshold, 1)), key=lambda v: (-counts[v], v))
        vocab = vocab[:max_size] if max_size else vocab
        ids = {v: 3 + i for i, v in enumerate(vocab)}
        assert out[col].to_pylist() == [2 if v is None else ids.get(v, 1) for v in raw]
        card = next(c for c in res.manifest["schema"] if c["name"] == col)["cardinality"]
        assert card == len(vocab) + 3


def test_value_counts_merge_in_any_order_and_grouping():
    """Merged value counts are the counts of the concatenated values, whatever the order and the
    grouping of the partials (sorted ones, as the CPU gives them, or not)."""
    from shardsmith.ops.stats import ValueCounts

    rng = np.random.default_rng(8)
    chunks = [rng.integers(-40, 40, n) for n in (0, 1, 500, 3000, 77)] + [np.array([2**62, -2**63])]
    parts = [(*np.unique(c, return_counts=True), i) for i, c in enumerate(chunks)]
    parts[3] = (parts[3][0][::-1].copy(), parts[3][1][::-1].copy(), 3)  # not sorted
    want = np.unique(np.concatenate(chunks), return_counts=True)
    stat = ValueCounts("k")
    for grouping in (parts, parts[::-1], [stat.merge(parts[:3]), stat.merge(parts[3:])]):
        values, counts, nulls = stat.merge(list(grouping))
        np.testing.assert_array_equal(values, want[0])
        np.testing.assert_array_equal(counts, want[1])
        assert nulls == sum(range(len(chunks)))
    bools = stat.merge([(np.array([False, True]), np.array([2, 3]), 1), (np.array([True]), np.array([4]), 0)])
    assert bools[0].tolist() == [False, True] and bools[1].tolist() == [2, 7] and bools[2] == 1


def test_categorify_fits_on_train_only(source, table, tmp_path):
    graph = [{"op": "categorify", "cols": ["s"]}]
    out, res = compile_graph(source, tmp_path, graph, split={"fractions": {"train": 0.5, "test": 0.5},
                                                             "fit_on": "train"})
    root = os.path.dirname(res.path)
    train = pa.concat_tables([pq.read_table(os.path.join(root, s["path"]))
                              for s in res.manifest["splits"]["train"]["shards"]])
    vocab = pq.read_table(os.path.join(root, "state", "graph-0", "s", "vocab.parquet"))
    assert sum(vocab["count"].to_pylist()) == sum(1 for v in train["s"].to_pylist() if v != 2)
    assert res.manifest["splits"]["train"]["rows"] + res.manifest["splits"]["test"]["rows"] == N


def test_hash_bucket_and_hashed_cross(source, table, tmp_path, cpu_kernels):
    graph = [{"op": "hash_bucket", "cols": ["s", "k"], "num_buckets": 1000, "seed": 5, "out": ["sh", "kh"]},
             {"op": "hashed_cross", "cols": ["s", "k", "x"], "num_buckets": 77, "seed": 3}]
    out, _ = compile_graph(source, tmp_path, graph, cpu_kernels)

    def h(v, seed):
        if v is None:
            return xxhash.xxh64_intdigest(b"", seed ^ NULL_SEED_XOR)
        if isinstance(v, str):
            return xxhash.xxh64_intdigest(v.encode(), seed)
        if isinstance(v, float):
            return xxhash.xxh64_intdigest(np.float64(0.0 if v == 0 else v).tobytes() if not math.isnan(v)
                                          else (0x7FF8000000000000).to_bytes(8, "little"), seed)
        return xxhash.xxh64_intdigest(int(v).to_bytes(8, "little", signed=True), seed)

    assert out["sh"].to_pylist() == [h(v, 5) % 1000 for v in table["s"].to_pylist()]
    assert out["kh"].to_pylist() == [h(v, 5) % 1000 for v in table["k"].to_pylist()]
    want = []
    for s, k, x in zip(table["s"].to_pylist(), table["k"].to_pylist(), table["x"].to_pylist()):
        want.append(h(x, h(k, h(s, 3))) % 77)
    assert out["s_x_k_x_x"].to_pylist() == want


def test_filter_rename_drop_and_row_accounting(source, table, tmp_path, cpu_kernels):
    graph = [{"op": "log1p", "cols": ["k"], "out": ["klog"]},
             {"op": "filter", "expr": "k >= 0 and (s != 'v1' or is_null(x)) and klog < 3.5"},
             {"op": "rename", "mapping": {"s": "category"}},
             {"op": "drop", "cols": ["num"]}]
    out, res = compile_graph(source, tmp_path, graph, cpu_kernels)
    keep = []
    for k, s, x in zip(table["k"].to_pylist(), table["s"].to_pylist(), values(table, "x")):
        klog = f32(math.log1p(k)) if k > -1 else None
        cond = (k >= 0) and (None if s is None else s != "v1") if s is not None or x is None else False
        cond = k >= 0 and ((s is not None and s != "v1") or x is None) and klog is not None and klog < 3.5
        keep.append(cond)
    assert out.num_rows == sum(keep)
    assert out.column_names == ["x", "k", "category", "klog"]
    assert out["k"].to_pylist() == [k for k, c in zip(table["k"].to_pylist(), keep) if c]
    rows = res.manifest["rows"]
    assert rows == {"in": N, "out": sum(keep), "filtered": N - sum(keep), "quarantined": 0}


def test_pushed_filter_prunes_row_groups_and_counts_rows(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    t = pa.table({"day": pa.array(np.repeat(np.arange(10), 100)), "v": pa.array(np.arange(1000.0))})
    pq.write_table(t, d / "a.parquet", row_group_size=100)
    out, res = compile_graph(str(d / "a.parquet"), tmp_path, [{"op": "filter", "expr": "day >= 7"},
                                                              {"op": "log1p", "cols": ["v"]}])
    assert out["day"].to_pylist() == [d for d in t["day"].to_pylist() if d >= 7]
    assert res.manifest["plan"]["rows_pruned"] == 700
    assert res.manifest["rows"] == {"in": 1000, "out": 300, "filtered": 700, "quarantined": 0}


@pytest.mark.parametrize("mode", ["null", "quarantine"])
def test_cast_with_bad_values(source, table, tmp_path, mode):
    graph = [{"op": "cast", "cols": ["num"], "dtype": "int32", "on_error": mode}]
    out, res = compile_graph(source, tmp_path, graph)
    raw = table["num"].to_pylist()
    bad = [not v.lstrip("-").isdigit() for v in raw]
    if mode == "null":
        assert out["num"].to_pylist() == [None if b else int(v) for v, b in zip(raw, bad)]
        assert res.manifest["rows"]["quarantined"] == 0
    else:
        assert out["num"].to_pylist() == [int(v) for v, b in zip(raw, bad) if not b]
        q = res.manifest["quarantine"]
        assert q["rows"] == sum(bad) == res.manifest["rows"]["quarantined"]
        root = os.path.dirname(res.path)
        qt = pa.concat_tables([pq.read_table(os.path.join(root, s["path"])) for s in q["shards"]])
        assert qt["_value"].to_pylist() == [v for v, b in zip(raw, bad) if b]
        assert set(qt["_step"].to_pylist()) == {"graph[0]"} and set(qt["_column"].to_pylist()) == {"num"}
        files = qt["_file"].to_pylist()
        rows = qt["_row"].to_pylist()
        # The recorded (file, row) points back at the offending input row.
        for f, r, v in zip(files, rows, qt["_value"].to_pylist()):
            assert pq.read_table(f)["num"][r].as_py() == v
        assert res.manifest["rows"]["in"] == res.manifest["rows"]["out"] + res.manifest["rows"]["quarantined"]


def test_cast_failure_names_file_column_and_row(source, tmp_path):
    from shardsmith.errors import ShardsmithError

    with pytest.raises(ShardsmithError) as e:
        compile_graph(source, tmp_path, [{"op": "cast", "cols": ["num"], "dtype": "int32"}])
    assert "column 'num': cannot cast 'bad" in str(e.value) and ".parquet" in str(e.value)
    assert not os.path.exists(tmp_path / "out")


def test_one_kernel_group_keeps_each_steps_parameters(tmp_path, cpu_kernels):
    # Two clips with different bounds on two float32 columns: one kernel group, two steps.
    t = pa.table({"a": pa.array([-2.0, 0.5, 3.0], pa.float32()), "b": pa.array([-2.0, 0.5, 3.0], pa.float32())})
    pq.write_table(t, tmp_path / "t.parquet")
    graph = [{"op": "clip", "cols": ["a"], "lower": 0.0}, {"op": "clip", "cols": ["b"], "lower": 1.0}]
    out, res = compile_graph(str(tmp_path / "t.parquet"), tmp_path, graph, cpu_kernels)
    assert out["a"].to_pylist() == [0.0, 0.5, 3.0]
    assert out["b"].to_pylist() == [1.0, 1.0, 3.0]


@pytest.mark.parametrize("case", ["ties", "negative", "wide", "unsigned", "floats", "one group", "empty"])
def test_lag_group_order_is_lexsorts(case):
    """The lag's sequence order (group, then value, ties in input order) by one int64 key where the
    values' range allows it, else by lexsort: the same permutation either way."""
    from shardsmith.ops.lag import group_order

    rng = np.random.default_rng(7)
    n = 0 if case == "empty" else 50_000
    group = rng.integers(0, 1 if case == "one group" else 3_000, n)
    ordered = {"ties": rng.integers(0, 40, n), "negative": rng.integers(-10**12, 10**12, n),
               "wide": rng.integers(-2**62, 2**62, n), "unsigned": rng.integers(0, 2**40, n).astype(np.uint64),
               "floats": rng.normal(size=n).round(2), "one group": rng.integers(-5, 5, n),
               "empty": np.zeros(0, np.int64)}[case]
    got = group_order(group, ordered)
    assert np.array_equal(got, np.lexsort((ordered, group)))
