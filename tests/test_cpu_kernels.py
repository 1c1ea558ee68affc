"""The CPU engine's compiled kernels (engine.cpu_kernels: numba) against the NumPy reference: every
op, input dtype and edge value through the fused kernels, and the row hash of every column type,
bit for bit. Kernels are built with ``numba`` (waiting for the compile), never ``auto``, so that
the compiled code is what runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from shardsmith.backends.cpu import CpuBackend, compiled
from shardsmith.backends.cpu.arrays import numeric_values
from shardsmith.backends.cpu.lowering import _fused_numpy, fused_values
from shardsmith.ir import Column, Fused, Schema, Step, fusion
from shardsmith.kernels import codegen, cpujit
from shardsmith.kernels import numba_fused as NF
from shardsmith.kernels import xxhash64 as xx
from shardsmith.ops.numeric import Bucketize, Clip, FillMissing, Log1p, Normalize, NormalizeMinmax

pytestmark = pytest.mark.skipif(not cpujit.available(), reason="numba is not installed")

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
SRC_DTYPES = [*INT_DTYPES, "float32", "float64", "float16", "bool"]


def edge_values(rng, dtype: str, n: int) -> np.ndarray:
    """Every edge of ``dtype`` first (extremes, zeros, NaN, infinities, subnormals), then random
    values spread over its range."""
    if dtype == "bool":
        return rng.random(n) < 0.5
    dt = np.dtype(dtype)
    if dt.kind == "f":
        info = np.finfo(dt)
        edge = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, -1.5, 0.5, 2.5, -2.5, float(info.max),
                float(info.min), float(info.tiny), float(info.smallest_subnormal), -float(info.smallest_subnormal),
                float(info.eps), 1e300, -1e-300, 65504.0, 2.0**53 + 1]
        with np.errstate(over="ignore"):
            edge = np.array(edge).astype(dt)
            spread = (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 9, n)).astype(dt)
        return np.concatenate([edge, spread])[:n]
    info = np.iinfo(dt)
    edge = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1, min(2**53 + 1, int(info.max))], dtype=dt)
    return np.concatenate([edge, rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)])[:n]


def arrow(values: np.ndarray, dtype: str, valid, offset: int = 0) -> pa.Array:
    """An Arrow column of the values (nulls where not ``valid``), sliced by ``offset`` so that the
    validity bitmap starts mid-byte."""
    pad = np.concatenate([np.zeros(offset, values.dtype), values])
    mask = None if valid is None else ~np.concatenate([np.ones(offset, bool), valid])
    arr = pa.array(pad, type=pa.float16() if dtype == "float16" else None, mask=mask)
    return arr.slice(offset)


def bits(arr: pa.Array):
    """What a shard stores: the type, which rows are valid, and the valid values' bits."""
    valid = np.asarray(arr.is_valid())
    values = arr.to_numpy(zero_copy_only=False)
    values = values.view(f"u{values.itemsize}") if values.dtype.kind == "f" else values
    return arr.type, arr.null_count, valid.tolist(), values[valid].tolist()


def fused_node(ops, schema_in: Schema) -> Fused:
    steps, schema = [], schema_in
    for i, op in enumerate(ops):
        schema = op.infer(schema)
        steps.append(Step(op, f"graph[{i}]", schema))
    return Fused(tuple(steps), fusion.group_columns(tuple(steps), schema_in))


def random_chain(rng, cols: tuple[str, ...], dtype: str):
    """A random chain of elementwise ops over ``cols`` and the fitted state each needs."""
    ops, states = [], {}
    for i in range(int(rng.integers(1, 6))):
        kind = int(rng.integers(0, 7))
        key = f"graph[{i}]"
        if kind == 0:
            fill = float(rng.choice([0.0, -0.0, 2.5, -1e6, 1e300, np.inf]))
            ops.append(FillMissing(cols=cols, value=fill))
        elif kind in (1, 2):
            lo, hi = sorted(float(v) for v in rng.integers(-100, 100, 2))
            ops.append(Clip(cols=cols, lower=lo if kind == 1 or rng.random() < 0.5 else None, upper=hi))
        elif kind == 3:
            ops.append(Log1p(cols=cols))
        elif kind == 4:
            ops.append(Normalize(cols=cols))
            states[key] = {c: {"mean": float(rng.normal(0, 10)), "std": float(rng.choice([1e-300, 0.3, 7.0, 1e10]))}
                           for c in cols}
        elif kind == 5:
            ops.append(NormalizeMinmax(cols=cols))
            states[key] = {c: {"min": float(rng.normal(0, 10)), "max": float(rng.normal(20, 10))} for c in cols}
        else:
            b = np.unique(np.concatenate([rng.normal(0, 50, int(rng.integers(0, 9))), [-np.inf, 0.0]]))
            ops.append(Bucketize(cols=cols, boundaries=tuple(float(v) for v in b)))
    return ops, states


def run_both(ops, states, columns: dict[str, pa.Array], dtype: str):
    """The node's groups through the compiled path and the NumPy path: (compiled, numpy) outputs."""
    node = fused_node(ops, Schema(tuple(Column(c, dtype) for c in columns)))
    frame = pa.table(columns)
    got, want = {}, {}
    for group in node.groups:
        out = compiled.fused_group("numba", node, group, frame, states)
        dtypes = group.chains[0].dtypes
        if out is None:  # only chains that cannot be exact in Numba stay on NumPy
            assert "float16" in dtypes or (any(isinstance(op, Log1p) for op in ops) and not NF.numpy_log1p_is_libm())
            continue
        got.update(out)
        want.update(_fused_numpy(node, group, frame, states))
    return got, want


@pytest.mark.parametrize("dtype", SRC_DTYPES)
@pytest.mark.parametrize("trial", range(2))  # each chain and dtype is a compile: a second or so
def test_random_chains_are_bit_identical_to_numpy(dtype, trial):
    rng = np.random.default_rng(SRC_DTYPES.index(dtype) * 100 + trial)
    n = int(rng.choice([0, 1, 7, 8, 9, 1003]))
    offset = int(rng.integers(0, 12))
    columns = {}
    for c in ("a", "b"):
        values = rng.permutation(edge_values(rng, dtype, max(n, 1)))[:n]
        valid = rng.random(n) > 0.2 if rng.random() < 0.7 else None
        columns[c] = arrow(values, dtype, valid, offset)
    ops, states = random_chain(rng, ("a", "b"), dtype)
    got, want = run_both(ops, states, columns, dtype)
    assert got.keys() == want.keys()
    for name in got:
        assert bits(got[name]) == bits(want[name]), (name, [op.describe() for op in ops])


@pytest.mark.parametrize("op", [FillMissing(cols=("a",), value=-0.0), Clip(cols=("a",), lower=-1.0, upper=1.0),
                                Log1p(cols=("a",)), Normalize(cols=("a",)), NormalizeMinmax(cols=("a",)),
                                Bucketize(cols=("a",), boundaries=(-1.0, 0.0, 0.5, 1e30))], ids=lambda op: op.op_name)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint64"])
def test_every_op_over_every_edge_value(op, dtype):
    rng = np.random.default_rng(3)
    values = edge_values(rng, dtype, 64)
    states = {"graph[0]": {"a": {"mean": 0.5, "std": 3.0, "min": -2.0, "max": 5.0}}}
    for valid in (None, rng.random(64) > 0.3):
        got, want = run_both([op], states, {"a": arrow(values, dtype, valid)}, dtype)
        assert bits(got["a"]) == bits(want["a"])


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("shape", ["few", "many then few"])
def test_remembered_results_are_the_numpy_reference(dtype, shape):
    """The kernel remembers a column's results by input bits (numba_fused.py MEMO_SLOTS): repeated
    values, -0.0 beside 0.0, NaN and infinities among them, nulls; and a column that first shows
    more distinct values than the trial allows, which stops remembering mid-column."""
    rng = np.random.default_rng(11 + SRC_DTYPES.index(dtype))
    few = edge_values(rng, dtype, 40)
    if shape == "few":
        values = rng.choice(few, 6000)
    else:
        values = np.concatenate([edge_values(rng, dtype, 4000), rng.choice(few, 3000)])
    valid = rng.random(len(values)) > 0.1
    for trial in range(3):
        ops, states = random_chain(np.random.default_rng(trial), ("a",), dtype)
        got, want = run_both(ops, states, {"a": arrow(values, dtype, valid, offset=3)}, dtype)
        for name in got:
            assert bits(got[name]) == bits(want[name]), (name, [op.describe() for op in ops])


def block_both(ops, states, columns: dict[str, pa.Array], dtype: str) -> int:
    """Each group's (columns, rows) block, as the serving row path makes it, through the compiled
    ``block`` and the NumPy reference: the same bits (NaN where missing). How many groups ran."""
    node = fused_node(ops, Schema(tuple(Column(c, dtype) for c in columns)))
    ran = 0
    for group in node.groups:
        src = np.array([numeric_values(columns[c]) for c in group.srcs])
        plan = compiled.chain_plan(node, group, states)
        got = compiled.fused_block("numba", plan, src) if plan is not None else None
        if got is None:  # integer results, float16 stages, or NumPy's log1p not the C library's
            dtypes = group.chains[0].dtypes
            assert dtypes[-1] not in ("float32", "float64") or "float16" in dtypes or (
                any(isinstance(op, Log1p) for op in ops) and not NF.numpy_log1p_is_libm())
            continue
        want = fused_values(node, group, src, len(src[0]), states)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(np.isnan(got), np.isnan(want)), [op.describe() for op in ops]
        keep = ~np.isnan(want)
        assert got[keep].view(f"u{got.itemsize}").tolist() == want[keep].view(f"u{want.itemsize}").tolist()
        ran += 1
    return ran


@pytest.mark.parametrize("dtype", SRC_DTYPES)
def test_the_row_paths_block_kernel_is_the_numpy_reference(dtype):
    rng = np.random.default_rng(SRC_DTYPES.index(dtype) + 7)
    n = int(rng.choice([1, 2, 9, 64]))
    columns = {}
    for c in ("a", "b", "c"):
        values = rng.permutation(edge_values(rng, dtype, max(n, 64)))[:n]
        columns[c] = arrow(values, dtype, rng.random(n) > 0.2)
    ops, states = random_chain(rng, ("a", "b", "c"), dtype)
    block_both(ops, states, columns, dtype)


@pytest.mark.parametrize("op", [FillMissing(cols=("a",), value=-0.0), Clip(cols=("a",), lower=-1.0, upper=1.0),
                                Log1p(cols=("a",)), Normalize(cols=("a",)), NormalizeMinmax(cols=("a",)),
                                Bucketize(cols=("a",), boundaries=(-1.0, 0.0, 0.5, 1e30))], ids=lambda op: op.op_name)
def test_the_block_kernel_takes_every_edge_value(op):
    values = edge_values(np.random.default_rng(4), "float32", 64)
    states = {"graph[0]": {"a": {"mean": 0.5, "std": 3.0, "min": -2.0, "max": 5.0}}}
    ran = block_both([op], states, {"a": arrow(values, "float32", np.arange(64) % 5 != 0)}, "float32")
    integer = isinstance(op, Bucketize)  # bucket numbers: not the block's float form
    assert ran == (0 if integer or (isinstance(op, Log1p) and not NF.numpy_log1p_is_libm()) else 1)


def test_float16_stages_stay_on_numpy_and_float16_inputs_compile():
    x = pa.array(np.array([1.5, -2.0, np.nan, 65504.0], np.float16))
    node = fused_node([Log1p(cols=("a",))], Schema((Column("a", "float16"),)))
    assert compiled.fused_group("numba", node, node.groups[0], pa.table({"a": x}), {}) is not None
    node = fused_node([Clip(cols=("a",), lower=0.0)], Schema((Column("a", "float16"),)))
    assert compiled.fused_group("numba", node, node.groups[0], pa.table({"a": x}), {}) is None
    assert NF.unsupported([node.steps[0].op], ("float16",)) == "no exact float16 rounding in Numba"


def test_ops_without_a_formula_stay_on_numpy():
    class Cube(Log1p):
        op_name = "cube_test"

        def apply(self, x, p, xp):
            return x * x * x

    assert not Cube(cols=("a",)).compiles() and Log1p(cols=("a",)).compiles()
    assert NF.unsupported([Cube(cols=("a",))], ("float32",)) == "op 'cube_test' has no formula"


# --- the row hash ------------------------------------------------------------------------------------
HASH_TYPES = [*INT_DTYPES, "float16", "float32", "float64", "bool"]


def _hashes(column, seed):
    return compiled.hash_column("numba", column, seed), CpuBackend("numpy").hash(column, seed)


@pytest.mark.parametrize("dtype", HASH_TYPES)
@pytest.mark.parametrize("offset", [0, 5])
def test_hash_of_numbers_and_nulls_is_the_reference(dtype, offset):
    rng = np.random.default_rng(len(dtype) + offset)
    values = edge_values(rng, dtype, 1000)
    column = arrow(values, dtype, rng.random(1000) > 0.15, offset)
    for seed in (0, 2**64 - 1, rng.integers(0, 2**63, 1000, dtype=np.int64).view(np.uint64)):
        got, want = _hashes(column, seed)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("large", [False, True])
def test_strings_of_every_length_against_the_xxhash_package(large):
    rng = np.random.default_rng(5)
    strings = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in list(range(130)) * 2]
    column = pa.array(strings, type=pa.large_binary() if large else pa.binary())
    for seed in (0, 1, 2**63, 2**64 - 1, xx.NULL_SEED_XOR):
        got = compiled.hash_column("numba", column, seed)
        assert [int(h) for h in got] == [xxhash.xxh64_intdigest(s, seed) for s in strings]


def test_string_columns_sliced_chunked_with_nulls_and_per_row_seeds():
    values = ["", "a", None, "héllo wörld", "x" * 70, None, "tail", "12345678" * 5] * 20
    arr = pa.array(values)
    seeds = np.arange(len(values), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for column in (arr, arr.slice(3), pa.array(values, pa.large_string()), pa.chunked_array([arr[:9], arr[9:]]),
                   pa.array([None] * 5, pa.string()), pa.array([], pa.string())):
        for seed in (9, seeds[: len(column)]):
            got, want = _hashes(column, seed)
            np.testing.assert_array_equal(got, want)


def test_other_types_hash_as_the_numpy_path_converts_them():
    for column in (pa.array([0, 86400 * 10**6, None], pa.timestamp("us")), pa.array([1, None, -3], pa.date32()),
                   pa.array([1, 2, None], pa.int16()).dictionary_encode(), pa.nulls(4, pa.int64())):
        got, want = _hashes(column, 17)
        np.testing.assert_array_equal(got, want)


def test_split_ids_are_the_reference():
    rng = np.random.default_rng(2)
    h = rng.integers(0, 2**64, 5000, dtype=np.uint64, endpoint=False)
    h[:3] = [0, 2**64 - 1, (2**53 // 2) << 11]
    thresholds = (2**53 // 2, 2**53 // 2, 2**53 * 9 // 10, 2**53)
    want = np.searchsorted(np.asarray(thresholds, np.int64), xx.to_unit53(h), side="right").astype(np.int8)
    np.testing.assert_array_equal(compiled.split_ids("numba", h, thresholds), want)


def test_kernels_run_on_several_threads_at_once():
    """Dask's worker threads call the kernels side by side (they release the GIL and use no Numba
    thread pool): every thread gets the reference's bits."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    node = fused_node([FillMissing(cols=("a",), value=1.0), Log1p(cols=("a",))], Schema((Column("a", "float32"),)))
    frames = [pa.table({"a": arrow(edge_values(rng, "float32", 20_000), "float32", rng.random(20_000) > 0.1)})
              for _ in range(8)]

    def both(frame):
        h = compiled.hash_column("numba", frame["a"], 3), CpuBackend("numpy").hash(frame["a"], 3)
        f = compiled.fused_group("numba", node, node.groups[0], frame, {})["a"], \
            _fused_numpy(node, node.groups[0], frame, {})["a"]
        return np.array_equal(*h) and bits(f[0]) == bits(f[1])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(both, frames))


# --- building --------------------------------------------------------------------------------------
def test_auto_runs_numpy_until_a_kernel_is_built():
    def build():
        time.sleep(0.3)
        return "kernel"

    key = ("test_auto", time.monotonic())
    assert cpujit.compiled("auto", key, build) is None  # not built yet: the caller runs NumPy
    assert cpujit.compiled("numba", key, build) == "kernel"  # waits
    assert cpujit.compiled("auto", key, build) == "kernel"


def test_a_failed_build_is_numpy_under_auto_and_an_error_naming_the_key_under_numba():
    from shardsmith.errors import ShardsmithError

    def build():
        raise RuntimeError("no luck")

    key = ("test_failed", time.monotonic())
    with pytest.raises(ShardsmithError, match="engine.cpu_kernels: a compiled CPU kernel failed to build"):
        cpujit.compiled("numba", key, build)
    assert cpujit.compiled("auto", key, build) is None


def test_auto_compiles_only_inputs_that_repay_numbas_start_up():
    big = cpujit.AUTO_MIN_ROWS
    assert cpujit.choose("auto", big, 1) == "auto" and cpujit.choose("auto", big - 1, 1) == "numpy"
    assert cpujit.choose("auto", big, 2) == "numpy"  # each worker process pays the start-up
    assert cpujit.choose("auto", -1, 4) == "auto"  # CSV: rows not known before reading
    assert cpujit.choose("numba", 10, 1) == "numba" and cpujit.choose("numpy", big, 1) == "numpy"


def test_generated_sources_are_cached_on_disk_by_their_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDSMITH_KERNEL_CACHE", str(tmp_path))
    ops = (FillMissing(cols=("a",), value=0.0), Log1p(cols=("a",)))
    layout = codegen.layout_of([{"fill": 0.0}, {}])
    text = NF.render(ops, layout, ("float32", "float32"))
    module = cpujit.load_source("ss_test", text)
    files = list((tmp_path / "numba").glob("ss_test_*.py"))
    assert len(files) == 1 and files[0].read_text() == text and module.__file__ == str(files[0])
    assert "v = (p[0] if isnan(v) else v)" in text and "v = log1p(v)" in text


# --- the demo pipeline's generated sources -----------------------------------------------------------
GOLDEN = Path(__file__).resolve().parent / "golden" / "numba"


def demo_chains():
    """The demo pipeline's two chains (fit: fill -> clip -> log1p; transform: then normalize), as
    tests/golden/ss_fused_*.cu holds them for the GPU."""
    fit = [(FillMissing(cols=("a",), value=0.0), {"fill": 0.0}), (Clip(cols=("a",), lower=0.0), {"lo": 0.0}),
           (Log1p(cols=("a",)), {})]
    transform = [*fit, (Normalize(cols=("a",)), {"mean": 0.0, "std": 1.0})]
    return [([op for op, _ in chain], codegen.layout_of([p for _, p in chain])) for chain in (fit, transform)]


def test_demo_pipeline_numba_sources_match_the_golden_files():
    sources = {}
    for ops, layout in demo_chains():
        text = NF.render(tuple(ops), layout, ("float32",) * len(ops))
        sources[f"ss_fused_{len(ops)}_stages.py.txt"] = text  # .txt: not a module to lint or import
    if os.environ.get("SHARDSMITH_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in sources.items():
            (GOLDEN / name).write_text(text)
    for name, text in sources.items():
        assert text == (GOLDEN / name).read_text(), f"code generation changed: review tests/golden/numba/{name}, " \
            "then regenerate with SHARDSMITH_UPDATE_GOLDEN=1"


def test_a_kernel_serves_every_parameter_value():
    """Parameters travel in arrays: two clips with other bounds render the same source."""
    layout = codegen.layout_of([{"lo": 0.0}])
    a = NF.render((Clip(cols=("a",), lower=0.0),), layout, ("float32",))
    assert a == NF.render((Clip(cols=("b",), lower=-7.5),), layout, ("float32",))


# --- categorify's lookup ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("offset", [0, 5])
def test_categorify_ids_are_the_numpy_paths(dtype, offset):
    """The compiled lookup against the NumPy path: edge values, nulls, clustered and strided values
    (a weak hash would pile them up), vocabularies of every size, an empty one."""
    from shardsmith.backends.cpu.lowering import run_categorify
    from shardsmith.ops import stats as S
    from shardsmith.ops.categorical import Categorify

    rng = np.random.default_rng(len(dtype) + offset)
    strided = (np.arange(3000) * (1 << min(8 * np.dtype(dtype).itemsize - 2, 40))).astype(dtype)
    values = np.concatenate([edge_values(rng, dtype, 2000), strided, rng.integers(0, 50, 20_000).astype(dtype),
                             np.full(5, np.iinfo(dtype).max, dtype)])
    column = arrow(values, dtype, rng.random(len(values)) > 0.1, offset)
    step = Step(Categorify(cols=("c",)), "graph[0]", Schema((Column("c", dtype, "categorical"),)))
    stat = S.ValueCounts("c")
    counts = {stat: stat.finalize(CpuBackend("numpy").partial(stat, column))}
    frame = pa.table({"c": column})
    for threshold in (0, 2, 10**9):
        state = Categorify(cols=("c",), freq_threshold=threshold).fit(counts)
        got, want = (run_categorify(CpuBackend(k), step, frame, state, None)["c"] for k in ("numba", "numpy"))
        assert got.equals(want), threshold


def test_a_compile_asks_for_its_first_pass_kernels_while_it_starts(demo_dir, tmp_path):
    """runtime/driver.warm_kernels: the fused groups whose parameters need no fitted state (the
    demo's fill > clip > log1p) are asked of the builder at plan time, so that the first
    partitions find them built; those with fitted parameters (normalize) wait for the fit; numpy
    and cluster compiles ask for nothing."""
    from shardsmith.compiler.config import compose
    from shardsmith.ir import Fused
    from shardsmith.runtime.driver import prepare, warm_kernels

    def prepared(*overrides):
        return prepare(compose([f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={tmp_path}", *overrides]))

    prep = prepared("engine.cpu_kernels=numba")
    prefix, fits, transform = prep.plan.programs()
    groups = [(item, g) for program in (prefix, *fits, transform) for item in program if isinstance(item, Fused)
              for g in item.groups]
    asked = [compiled.warm_fused(item, g) for item, g in groups]
    assert warm_kernels(prep) == sum(asked) == 1 and len(groups) >= 2  # fill > clip > log1p; normalize waits
    assert cpujit.wait_built(120) is not None
    item, group = groups[asked.index(True)]
    ops, layout, dtypes = compiled.chain_plan(item, group, {})[:3]
    assert compiled._fused_kernel("auto", ops, layout, dtypes, np.dtype(np.float32), np.float32) is not None  # built
    assert warm_kernels(prepared("engine.cpu_kernels=numpy")) == 0
    assert warm_kernels(prepared("engine.cpu_kernels=numba", "engine.cluster=local")) == 0
