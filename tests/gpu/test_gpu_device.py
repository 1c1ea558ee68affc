"""The GPU backend's pieces on a real device, each against the CPU engine or the host build of the
same kernel. Marked ``gpu``: skipped, with the reason, where no GPU engine can run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shardsmith.backends import gpu_unavailable_reason
from shardsmith.backends.cpu import CpuBackend
from shardsmith.kernels import codegen
from shardsmith.ops.stats import ValueCounts

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gpu_unavailable_reason() is not None,
                                                  reason=f"no GPU engine here: {gpu_unavailable_reason()}")]
HERE = Path(__file__).resolve().parent


def _sibling(name, folder="."):
    """A helper module of this folder, or of ``folder`` relative to it (the tests run with
    --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(f"_{name}", HERE / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu():
    from shardsmith.backends import get_backend

    return get_backend("gpu")


def _arrays(rng, n=5000):
    """Arrow arrays of every type the engines hash and categorify, with nulls; some sliced."""
    host = _sibling("test_kernels_host")
    out = {}
    for name, dtype in host.HASH_TYPES.items():
        if name == "f16":
            continue  # cuDF has no float16: the read refuses such a column (see backend.read)
        values = host._fixed_values(rng, dtype, n)
        out[name] = pa.array(values, mask=rng.random(n) < 0.1)
    out["str"] = pa.array(host._random_strings(rng, n), mask=rng.random(n) < 0.1)
    out["sliced_str"] = out["str"].slice(13, n - 20)
    out["sliced_i64"] = out["i64"].slice(37)
    out["date"] = pa.array(rng.integers(-1000, 20000, n).astype(np.int32), pa.int32()).cast(pa.date32())
    return out


def test_host_to_device_goes_through_pinned_staging():
    import cupy as cp

    from shardsmith.backends.gpu import transfer

    rng = np.random.default_rng(0)
    for size in (0, 1, 7, transfer.CHUNK - 1, 3 * transfer.CHUNK + 5):
        host = rng.integers(0, 256, size, dtype=np.uint8)
        np.testing.assert_array_equal(cp.asnumpy(transfer.to_device(host)), host)
    f = rng.normal(size=(100, 3))
    np.testing.assert_array_equal(cp.asnumpy(transfer.to_device(f)), f)


def test_arrow_columns_round_trip_through_the_device():
    from shardsmith.backends.gpu import transfer

    for name, arr in _arrays(np.random.default_rng(1)).items():
        back = transfer.array_to_series(arr).to_arrow()
        want = arr.cast(pa.int32()) if pa.types.is_date32(arr.type) else arr
        back = back.cast(want.type)
        np.testing.assert_array_equal(np.asarray(back.is_valid()), np.asarray(want.is_valid()), err_msg=name)
        np.testing.assert_array_equal(back.to_numpy(zero_copy_only=False), want.to_numpy(zero_copy_only=False),
                                      err_msg=name)  # NaN equals NaN here, unlike Array.equals


def test_column_views_of_sliced_columns(gpu):
    import cupy as cp

    from shardsmith.backends.gpu import columns as C
    from shardsmith.backends.gpu import transfer

    arr = pa.array(np.arange(1000, dtype=np.int64), mask=np.arange(1000) % 7 == 0)
    s = transfer.array_to_series(arr).iloc[45:900]
    np.testing.assert_array_equal(cp.asnumpy(C.validity(s)), np.asarray(arr.slice(45, 855).is_valid()))
    valid = np.asarray(arr.slice(45, 855).is_valid())
    np.testing.assert_array_equal(cp.asnumpy(C.values(s))[valid], np.arange(45, 900)[valid])


def test_hash_on_the_device_matches_the_cpu_engine(gpu):
    import cupy as cp

    from shardsmith.backends.gpu import transfer

    cpu = CpuBackend()
    for name, arr in _arrays(np.random.default_rng(2)).items():
        series = transfer.array_to_series(arr)
        for seed in (0, 2**64 - 1):
            np.testing.assert_array_equal(cp.asnumpy(gpu.hash(series, seed)), cpu.hash(arr, seed), err_msg=name)
        seeds = cpu.hash(arr, 5)
        chained = gpu.hash(series, transfer.to_device(seeds))
        np.testing.assert_array_equal(cp.asnumpy(chained), cpu.hash(arr, seeds), err_msg=name)
        h = cpu.hash(arr, 1)
        for nb in (7, 2**31, 2**40 + 1):
            from shardsmith.kernels import xxhash64 as xx

            np.testing.assert_array_equal(cp.asnumpy(gpu.buckets(transfer.to_device(h), nb)), xx.to_buckets(h, nb))


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 4099, 1_000_003])
def test_fused_kernels_on_the_device_match_the_reference(gpu, n):
    import cupy as cp

    from shardsmith.backends.gpu import impl, transfer

    host = _sibling("test_kernels_host")
    rng = np.random.default_rng(n)
    for trial in range(6):
        src_dtype = ["float32", "float64", "int32", "int8", "uint16", "bool"][trial]
        ops, per_op, dtypes, d = [], [], [], src_dtype
        for _ in range(int(rng.integers(1, 6))):
            op, p = host._random_op(rng, 2)
            d = op.out_dtype(d)
            ops.append(op)
            per_op.append(p)
            dtypes.append(d)
        params = [[per_op[j][c] for j in range(len(ops))] for c in range(2)]
        layout = codegen.layout_of(params[0])
        src = codegen.render(ops, layout, src_dtype, tuple(dtypes))
        P, B, BO = codegen.pack(layout, params)
        np_src = np.bool_ if src_dtype == "bool" else np.dtype(src_dtype)
        arrays = [pa.array(host._fixed_values(rng, np_src, max(n, 12))[:n], mask=rng.random(n) < 0.2)
                  for _ in range(2)]
        arrays[1] = pa.concat_arrays([pa.nulls(3, arrays[1].type), arrays[1]]).slice(3)  # a bit offset
        series = [transfer.array_to_series(a) for a in arrays]
        outs = impl.launch_fused(src, series, dtypes[-1], P, B, BO)
        x = np.stack([np.asarray(a.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False))
                      for a in arrays], axis=1) if n else np.zeros((0, 2))
        with np.errstate(all="ignore"):
            ref = codegen.reference(ops, params, tuple(dtypes), x)  # the NumPy definition (no compiler needed)
        for c in range(2):
            got = outs[c].to_arrow()
            missing = np.isnan(ref[:, c])
            assert got.null_count == missing.sum()
            np.testing.assert_array_equal(np.asarray(got.is_valid()), ~missing)
            g = got.to_numpy(zero_copy_only=False)[~missing].astype(np.float64)
            w = ref[:, c][~missing]
            if dtypes[-1] == "bool":
                np.testing.assert_array_equal(g != 0, w != 0)
            elif dtypes[-1].startswith("float"):  # CUDA's log1p may differ from NumPy's by an ulp
                np.testing.assert_allclose(g, w.astype(dtypes[-1]).astype(np.float64), rtol=1e-6, atol=1e-12)
            else:
                np.testing.assert_array_equal(g, w)
    cp.cuda.Device().synchronize()


def test_categorify_on_the_device_matches_index_in(gpu):
    import cupy as cp

    from shardsmith.backends.gpu import impl, transfer

    rng = np.random.default_rng(3)
    host = _sibling("test_kernels_host")
    pool = host._random_strings(rng, 300)
    columns = {"str": pa.array([pool[i] for i in rng.integers(0, 300, 20000)], mask=rng.random(20000) < 0.05),
               "i64": pa.array(rng.integers(0, 500, 20000) * 1_000_003, mask=rng.random(20000) < 0.05),
               "f64": pa.array(np.where(rng.random(20000) < 0.1, -0.0, rng.integers(-5, 5, 20000).astype(float)))}
    for name, arr in columns.items():
        vocab_values = pc.value_counts(arr.drop_null()).field("values")[:150]
        vocab = pa.table({"value": vocab_values})
        series = transfer.array_to_series(arr)
        ids = cp.asnumpy(impl.categorify_ids(gpu, series, vocab))
        np.testing.assert_array_equal(ids, host._index_in(arr, vocab_values), err_msg=name)
        assert impl.device_vocabulary(gpu, series, vocab) is impl.device_vocabulary(gpu, series, vocab)


def test_value_counts_partial_matches_the_cpu_engine(gpu):
    from shardsmith.backends.gpu import transfer

    stat = ValueCounts("x")
    for name, arr in _arrays(np.random.default_rng(4), 3000).items():
        if name == "date":
            continue
        g = stat.finalize(stat.merge([gpu.partial(stat, transfer.array_to_series(arr))]))
        c = stat.finalize(stat.merge([CpuBackend().partial(stat, arr)]))
        assert g[2] == c[2], name
        assert g[0].type == c[0].type, name
        assert _counts_by_value(g) == _counts_by_value(c), name


def _counts_by_value(merged) -> dict:
    """{value: count}, floats keyed by their bits (NaN payloads and -0.0 are values of their own)."""
    values = merged[0].to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        values = values.view({4: np.uint32, 8: np.uint64}[values.itemsize])
    return dict(zip(values.tolist(), np.asarray(merged[1]).tolist()))


def test_moments_and_histograms_match_the_cpu_engine(gpu):
    from shardsmith.backends.gpu import transfer
    from shardsmith.ops.stats import MinMax, Moments, Quantiles

    rng = np.random.default_rng(5)
    x = rng.normal(0, 1e3, 100000)
    x[::10] = np.nan
    arr = pa.array(x.astype(np.float32), mask=rng.random(100000) < 0.1)
    series = transfer.array_to_series(arr)
    for stat in (Moments("x"), MinMax("x"), Quantiles("x", 10)):
        g, c = gpu.partial(stat, series), CpuBackend().partial(stat, arr)
        if isinstance(stat, Quantiles):
            np.testing.assert_array_equal(g[0], c[0])
            np.testing.assert_array_equal(g[1], c[1])
        else:
            assert g == c  # exact sums: bit-identical whatever the engine


def test_numeric_casts_on_the_device(gpu):
    import cupy as cp

    from shardsmith.kernels import casts

    host = _sibling("test_kernels_host")
    rng = np.random.default_rng(6)
    for src in casts.NUMERIC:
        values = host._cast_values(rng, src)
        for dst in casts.NUMERIC:
            with np.errstate(all="ignore"):
                want, want_failed = casts.cast(values, src, dst)
            got, failed = casts.cast(cp.asarray(values), src, dst, cp)
            np.testing.assert_array_equal(cp.asnumpy(failed), want_failed, err_msg=f"{src}->{dst}")
            ok = ~want_failed
            np.testing.assert_array_equal(cp.asnumpy(got)[ok], want[ok], err_msg=f"{src}->{dst}")


def test_expressions_on_the_device_match_the_cpu_engine(gpu):
    """The GPU adapter (backends/gpu/expr.py) against the CPU one on random data and expressions:
    the same predicates' rows, and the same derived values."""
    import cupy as cp

    from shardsmith.backends.cpu import expr as cpu_expr
    from shardsmith.backends.gpu import expr, transfer
    from shardsmith.errors import ConfigError
    from shardsmith.inputs.scan import to_schema
    from shardsmith.ir.expr import parse_expression
    from shardsmith.ir.expr_types import KIND_DTYPES, infer

    ref = _sibling("exprref", "..")
    checked = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        table = ref.table(rng, 2000)
        frame = transfer.table_to_frame(table)
        schema = to_schema(table.schema, {})
        dates = [c.name for c in schema.columns if c.dtype == "date"]
        for _ in range(40):
            text = ref.pred(rng) if rng.random() < 0.5 else ref.num_expr(rng)
            try:
                node = parse_expression(text, "t")
                kind = infer(node, schema, "t")
            except ConfigError:
                continue
            if kind == "bool":
                got = np.flatnonzero(cp.asnumpy(expr.filter_mask(frame, node, dates)))
                np.testing.assert_array_equal(got, np.flatnonzero(cpu_expr.filter_mask(table, node)), err_msg=text)
            want = cpu_expr.derive_column(table, node, KIND_DTYPES[kind])
            have = expr.derive_series(frame, node, KIND_DTYPES[kind], dates).to_arrow()
            if pa.types.is_date32(want.type):
                want = want.cast(pa.int32())
            assert have.cast(want.type).equals(want), text
            checked += 1
    assert checked > 150


def test_read_matches_the_cpu_engine(gpu, tmp_path):
    from shardsmith.compiler.build import build
    from shardsmith.compiler.config import from_dict
    from shardsmith.compiler.passes import optimize
    from shardsmith.compiler.planner import physical_plan
    from shardsmith.demo import block

    table = pa.concat_tables([block(3000, 0, i) for i in range(3)])
    table = table.append_column("d", pa.array(np.arange(9000, dtype=np.int32)).cast(pa.date32()))
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=1000)
    cfg = from_dict({"name": "t", "source": {"paths": [str(tmp_path / "in.parquet")]},
                     "graph": [{"op": "filter", "expr": "I1 > 1 or C1 == 'x'"}],
                     "split": {"fractions": {"a": 0.3, "b": 0.7}, "key": "C2", "seed": 4, "fit_on": None},
                     "output": {"dir": str(tmp_path / "o"), "shard_rows": 100},
                     "engine": {"kind": "gpu", "cluster": "inprocess", "partition_bytes": "1MB"}})
    plan = physical_plan(optimize(build(cfg)), cfg.engine)
    assert plan.graph.source.filter is not None  # the filter was pushed into the read
    for part in plan.partitions:
        g, gn = gpu.read(part, plan.graph.source, plan.graph.split)
        c, cn = CpuBackend().read(part, plan.graph.source, plan.graph.split)
        assert gn == cn
        got = gpu.to_arrow(g)
        for name in c.column_names:
            want = c[name].combine_chunks()
            have = got[name].combine_chunks()
            if pa.types.is_date32(want.type):
                want = want.cast(pa.int32())
            assert have.cast(want.type).equals(want), name


def test_text_reads_quarantine_the_cpu_engines_rows(gpu, tmp_path):
    """CSV on the GPU engine is parsed on the host as on the CPU engine: the same rows, the same
    row numbers, the same quarantine (a bad value, a row with a value too many)."""
    from shardsmith.backends.base import TaskContext
    from shardsmith.compiler.build import build
    from shardsmith.compiler.config import from_dict
    from shardsmith.compiler.passes import optimize
    from shardsmith.compiler.planner import physical_plan

    lines = ["label,I1,C1"] + [f"{i % 2},{i},c{i % 5}" for i in range(3000)]
    lines[700], lines[2000] = "1,x,c1", "0,1,c2,extra"
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    cfg = from_dict({"name": "t", "source": {"paths": [str(tmp_path / "in.csv")], "format": "csv",
                                             "schema": {"I1": "int64"}, "on_error": "quarantine"},
                     "output": {"dir": str(tmp_path / "o"), "shard_rows": 100},
                     "engine": {"kind": "gpu", "cluster": "inprocess"}})
    plan = physical_plan(optimize(build(cfg)), cfg.engine)
    part = plan.partitions[0]
    gctx, cctx = TaskContext(0, plan.files), TaskContext(0, plan.files)
    g, gn = gpu.read(part, plan.graph.source, plan.graph.split, gctx)
    c, cn = CpuBackend().read(part, plan.graph.source, plan.graph.split, cctx)
    assert gn == cn == 3000 and len(g) == c.num_rows == 2998
    assert gpu.to_arrow(g)["__row"].to_pylist() == c["__row"].to_pylist()
    assert gctx.quarantined[0].equals(cctx.quarantined[0])
    assert cctx.quarantined[0]["_row"].to_pylist() == [699, 1999]


def test_to_arrow_gives_the_planned_types(gpu):
    from shardsmith.backends.gpu import transfer
    from shardsmith.ir import Column, Schema

    table = pa.table({"d": pa.array([1, None, 3], pa.int32()).cast(pa.date32()), "b": pa.array([b"x", None, b"yz"]),
                      "s": pa.array(["a", "b", None]), "i": pa.array([1, 2, 3], pa.int64())})
    frame = transfer.table_to_frame(table)
    schema = Schema((Column("s", "string"), Column("d", "date"), Column("b", "binary"), Column("i", "int32")))
    out = gpu.to_arrow(gpu.conform(frame, schema), schema)
    assert out.schema == pa.schema([("s", pa.string()), ("d", pa.date32()), ("b", pa.binary()), ("i", pa.int32())])
    assert out.to_pydict() == {"s": ["a", "b", None], "d": table["d"].to_pylist(), "b": [b"x", None, b"yz"],
                               "i": [1, 2, 3]}


@pytest.mark.skipif(bool(os.environ.get("SHARDSMITH_FAKE_GPU")), reason="the emulated GPU runs host builds")
def test_kernels_are_compiled_once_and_cached_on_disk(gpu, tmp_path, monkeypatch):
    from shardsmith.kernels import gpu as K

    monkeypatch.setenv("SHARDSMITH_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(K, "_modules", {})
    src = codegen.render([codegen_op()], codegen.layout_of([{}]), "float32", ("float32",))
    f1 = K.function(src, src.entries[0])
    f2 = K.function(src, src.entries[0])
    assert len(list(tmp_path.glob("*.cubin"))) == 1 and f1 is not None and f2 is not None


def codegen_op():
    from shardsmith.ops.numeric import Log1p

    return Log1p(cols=("a",))
