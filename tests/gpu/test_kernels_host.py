"""The CUDA kernels' logic, compiled for the host (kernels/hostcc.py) and checked against the NumPy
references that define their results, on many random inputs. This catches kernel logic errors
without a GPU; the GPU tests then check the same kernels on the device."""

from __future__ import annotations

import ctypes

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shardsmith.backends.cpu import CpuBackend
from shardsmith.kernels import casts, codegen, hostcc
from shardsmith.kernels import lookup as L
from shardsmith.kernels import xxhash64 as xx
from shardsmith.kernels.sources import static_source
from shardsmith.ops.numeric import Bucketize, Clip, FillMissing, Log1p, Normalize, NormalizeMinmax

pytestmark = pytest.mark.skipif(hostcc.compiler() is None, reason="no C++ compiler for the host build")
I64, U64 = ctypes.c_longlong, ctypes.c_ulonglong


@pytest.fixture(scope="module")
def hashlib_():
    return hostcc.build(static_source("xxhash64.cu"))


@pytest.fixture(scope="module")
def lookuplib():
    return hostcc.build(static_source("lookup.cu"))


def _mask(valid, offset):
    return None if valid is None else hostcc.bitmask(np.concatenate([np.zeros(offset, bool), valid]))


def _fixed_values(rng, dtype, n):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-310, 65504.0, 1e300])
        x = np.concatenate([special, rng.normal(0, 1e6, n - len(special))])
        if dtype != np.float64:
            with np.errstate(over="ignore"):
                x = x.astype(dtype)
        return x.astype(dtype)
    if dtype.kind == "b":
        return rng.random(n) < 0.5
    info = np.iinfo(dtype)
    edge = np.array([info.min, info.max, 0, 1], dtype=dtype)
    return np.concatenate([edge, rng.integers(info.min, info.max, n - 4, dtype=dtype, endpoint=True)])


HASH_TYPES = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "u8": np.uint8, "u16": np.uint16,
              "u32": np.uint32, "u64": np.uint64, "b8": np.bool_, "f16": np.float16, "f32": np.float32,
              "f64": np.float64, "ts_s": np.int64, "ts_ms": np.int64, "ts_ns": np.int64}


@pytest.mark.parametrize("suffix", list(HASH_TYPES))
@pytest.mark.parametrize("offset", [0, 5])
def test_hash_fixed_width_matches_the_reference(hashlib_, suffix, offset):
    rng = np.random.default_rng(len(suffix) * 7 + offset)
    n = 3000
    values = _fixed_values(rng, HASH_TYPES[suffix], n)
    valid = rng.random(n) > 0.15
    seed = int(rng.integers(0, 2**63)) * 2 + 1
    out = np.empty(n, dtype=np.uint64)
    raw = values.view(np.uint16) if suffix == "f16" else values.view(np.uint8) if suffix == "b8" else values
    mask = _mask(valid, offset)  # held in a name: ctypes keeps no reference to what a pointer points at
    getattr(hashlib_, f"ss_hash_{suffix}")(hostcc.ptr(raw), hostcc.ptr(mask), I64(offset), None,
                                           U64(seed), hostcc.ptr(out), I64(n))
    arr = pa.array(values, mask=~valid) if suffix != "f16" else pa.array(values, type=pa.float16(), mask=~valid)
    if suffix.startswith("ts_"):
        arr = arr.view(pa.timestamp(suffix[3:]))
    expected = CpuBackend().hash(arr, seed)
    np.testing.assert_array_equal(out, expected)


def test_hash_fixed_width_against_the_xxhash_package(hashlib_):
    """An independent check of the spec's int and float layouts (not our NumPy code)."""
    import xxhash

    rng = np.random.default_rng(3)
    ints = _fixed_values(rng, np.int64, 500)
    floats = np.array([0.0, -0.0, np.nan, 1.5, -2.25, np.inf], dtype=np.float64)
    for values, suffix, words in ((ints, "i64", ints.view(np.uint64)),
                                  (floats, "f64", xx.float_words(floats))):
        out = np.empty(len(values), dtype=np.uint64)
        getattr(hashlib_, f"ss_hash_{suffix}")(hostcc.ptr(values), None, I64(0), None, U64(42), hostcc.ptr(out),
                                               I64(len(values)))
        expected = [xxhash.xxh64_intdigest(int(w).to_bytes(8, "little"), 42) for w in words]
        assert out.tolist() == expected
    assert xx.float_words(np.array([-0.0]))[0] == 0 and xx.float_words(np.array([np.nan]))[0] == xx.CANONICAL_NAN


def test_hash_with_per_row_seeds_chains_in_place(hashlib_):
    rng = np.random.default_rng(4)
    a, b = rng.integers(-100, 100, 1000), rng.integers(0, 5, 1000).astype(np.int32)
    h = np.empty(1000, dtype=np.uint64)
    hashlib_.ss_hash_i64(hostcc.ptr(a), None, I64(0), None, U64(9), hostcc.ptr(h), I64(1000))
    hashlib_.ss_hash_i32(hostcc.ptr(b), None, I64(0), hostcc.ptr(h), U64(0), hostcc.ptr(h), I64(1000))  # out = seeds
    expected = xx.xxh64_u64(xx.int_words(b), xx.xxh64_u64(xx.int_words(a), 9))
    np.testing.assert_array_equal(h, expected)


def _random_strings(rng, n):
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 101))
        if rng.random() < 0.3:
            out.append("".join(rng.choice(list("aé€𝄞z0 "), size=k // 3)))  # multi-byte UTF-8
        else:
            out.append(bytes(rng.integers(0, 128, k, dtype=np.uint8)).decode("ascii"))
    out[:4] = ["", "a", "x" * 32, "y" * 100]
    return out


@pytest.mark.parametrize("large", [False, True])
def test_hash_strings_matches_the_reference_and_xxhash(hashlib_, large):
    import xxhash

    rng = np.random.default_rng(5 + large)
    strings = _random_strings(rng, 1200)
    valid = rng.random(len(strings)) > 0.1
    arr = pa.array(strings, type=pa.large_string() if large else pa.string(), mask=~valid)
    sliced = arr.slice(7)  # a column that starts inside its buffers, as a sliced cuDF column does
    odt = np.int64 if large else np.int32
    offsets = np.frombuffer(sliced.buffers()[1], dtype=odt)[sliced.offset : sliced.offset + len(sliced) + 1]
    chars = np.frombuffer(sliced.buffers()[2], dtype=np.uint8)
    n, out = len(sliced), np.empty(len(sliced), dtype=np.uint64)
    mask = np.frombuffer(sliced.buffers()[0], dtype=np.uint8)
    words = np.zeros((len(mask) + 3) // 4, dtype=np.uint32)
    words.view(np.uint8)[: len(mask)] = mask
    entry = "ss_hash_str64" if large else "ss_hash_str32"
    getattr(hashlib_, entry)(hostcc.ptr(offsets), hostcc.ptr(chars), hostcc.ptr(words), I64(sliced.offset), None,
                             U64(77), hostcc.ptr(out), I64(n))
    np.testing.assert_array_equal(out, CpuBackend().hash(sliced, 77))
    for i in range(0, n, 37):
        s = sliced[i].as_py()
        expected = xxhash.xxh64_intdigest(s.encode(), 77) if s is not None else xx.null_hash(77)
        assert out[i] == expected


def test_buckets(hashlib_):
    h = np.random.default_rng(6).integers(0, 2**64, 1000, dtype=np.uint64, endpoint=False)
    for nb, dtype, entry in ((1000, np.int32, "ss_buckets_i32"), (2**31, np.int32, "ss_buckets_i32"),
                             (2**40 + 3, np.int64, "ss_buckets_i64")):
        out = np.empty(1000, dtype=dtype)
        getattr(hashlib_, entry)(hostcc.ptr(h), U64(nb), hostcc.ptr(out), I64(1000))
        np.testing.assert_array_equal(out, xx.to_buckets(h, nb))


# --- float16 conversions (common.cuh) against NumPy ------------------------------------------------
def _clip_chain(src_dtype, dst_dtype):
    """A clip with a bound below every value: a pure conversion src -> float64 -> dst."""
    params = [[{"lo": -1e308}]]
    layout = codegen.layout_of(params[0])
    return codegen.render([Clip(cols=("a",), lower=-1e308)], layout, src_dtype, (dst_dtype,)), \
        codegen.pack(layout, params)


def test_float16_conversions_match_numpy():
    every_half = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = every_half[np.isfinite(every_half)]
    rng = np.random.default_rng(7)
    doubles = np.concatenate([rng.normal(0, s, 20000) for s in (1e-7, 1e-5, 1.0, 1e3, 7e4)])
    ties = (finite.astype(np.float64)[:-1] + np.diff(finite.astype(np.float64)) / 2)  # exactly halfway
    doubles = np.concatenate([doubles, ties, finite.astype(np.float64), [65519.99, 65520.0, 1e-8, 2.0**-25]])
    # a float16 -> float16 chain rounds through float64 and back: every finite half round-trips
    # exactly; NaN and +-inf are missing (null)
    src, (P, B, BO) = _clip_chain("float16", "float16")
    out, valid, _ = hostcc.run_fused(src, [every_half.view(np.uint16)], [None], np.uint16, P, B, BO)
    ok = np.isfinite(every_half)
    np.testing.assert_array_equal(out[0][ok], every_half[ok].view(np.uint16))
    assert not valid[0][~ok].any() and valid[0][ok].all() and (~ok).sum() == 2 + 2 * 1023
    # doubles -> float16: NumPy's float64 -> float16 rounding, ties included; an overflow to +-inf
    # is missing (ops/numeric.py: infinite results are missing)
    src, (P, B, BO) = _clip_chain("float64", "float16")
    out, valid, _ = hostcc.run_fused(src, [doubles], [None], np.uint16, P, B, BO)
    with np.errstate(over="ignore"):
        expected = doubles.astype(np.float16)
    ok = np.isfinite(expected)
    np.testing.assert_array_equal(out[0][ok], expected[ok].view(np.uint16))
    assert not valid[0][~ok].any() and valid[0][ok].all() and (~ok).sum() > 0


# --- fused kernels against the reference and the CPU engine ----------------------------------------
def _random_op(rng, k):
    """A random elementwise op and its per-column parameters for k columns."""
    kind = rng.integers(0, 6)
    cols = ("a",)
    if kind == 0:
        return FillMissing(cols=cols, value=0.0), [{"fill": float(rng.normal(0, 5))} for _ in range(k)]
    if kind == 1:
        op = Clip(cols=cols, lower=0.0, upper=1.0)
        return op, [dict(zip(("lo", "hi"), sorted(rng.normal(0, 3, 2).tolist()))) for _ in range(k)]
    if kind == 2:
        return Log1p(cols=cols), [{} for _ in range(k)]
    if kind == 3:
        return Normalize(cols=cols), [{"mean": float(rng.normal()), "std": float(rng.uniform(0.1, 5))}
                                      for _ in range(k)]
    if kind == 4:
        return NormalizeMinmax(cols=cols), [{"min": float(rng.normal()), "range": float(rng.uniform(0.1, 5))}
                                            for _ in range(k)]
    return Bucketize(cols=cols, boundaries=(0.0, 1.0)), [
        {"boundaries": np.unique(rng.normal(0, 3, int(rng.integers(1, 9))))} for _ in range(k)]


def _out_dtype(op, dtype):
    return op.out_dtype(dtype)


SRC_DTYPES = ["float32", "float64", "int8", "int32", "int64", "uint16", "bool"]


@pytest.mark.parametrize("trial", range(40))
def test_fused_kernel_host_build_matches_the_reference(trial):
    rng = np.random.default_rng(100 + trial)
    k, n = int(rng.integers(1, 4)), int(rng.integers(1, 700))
    src_dtype = SRC_DTYPES[trial % len(SRC_DTYPES)]
    ops, per_op, dtypes, d = [], [], [], src_dtype
    for _ in range(int(rng.integers(1, 6))):
        op, p = _random_op(rng, k)
        d = _out_dtype(op, d)
        ops.append(op)
        per_op.append(p)
        dtypes.append(d)
    params = [[per_op[j][c] for j in range(len(ops))] for c in range(k)]
    layout = codegen.layout_of(params[0])
    src = codegen.render(ops, layout, src_dtype, tuple(dtypes))
    P, B, BO = codegen.pack(layout, params)
    inputs, valids, x = [], [], []
    for _ in range(k):
        v = _fixed_values(rng, np.dtype(src_dtype) if src_dtype != "bool" else np.bool_, max(n, 12))[:n]
        v = rng.permutation(v)
        valid = rng.random(n) > 0.2 if rng.random() < 0.7 else None
        inputs.append(v.view(np.uint8) if src_dtype == "bool" else v)
        valids.append(valid)
        f = v.astype(np.float64)
        x.append(np.where(valid, f, np.nan) if valid is not None else f)
    offsets = [int(rng.integers(0, 40)) for _ in range(k)]
    dst_np = np.uint8 if dtypes[-1] == "bool" else np.dtype(dtypes[-1])
    out, out_valid, nulls = hostcc.run_fused(src, inputs, valids, dst_np, P, B, BO, offsets)
    with np.errstate(all="ignore"):
        ref = codegen.reference(ops, params, tuple(dtypes), np.stack(x, axis=1))
    for c in range(k):
        missing = np.isnan(ref[:, c])
        np.testing.assert_array_equal(out_valid[c], ~missing)
        assert nulls[c] == missing.sum()
        want = ref[:, c][~missing]
        got = out[c][~missing]
        if dtypes[-1] == "bool":
            np.testing.assert_array_equal(got != 0, want != 0)
        elif dtypes[-1].startswith("float") and any(isinstance(op, Log1p) for op in ops):
            # libm's log1p and NumPy's differ by an ulp at times (so do CUDA's): the spec's tolerance
            np.testing.assert_allclose(got, want.astype(dtypes[-1]), rtol=1e-6, atol=1e-12)
        elif dtypes[-1].startswith("float"):
            np.testing.assert_array_equal(got, want.astype(dtypes[-1]))  # bit-exact: IEEE arithmetic only
        else:
            np.testing.assert_array_equal(got, want.astype(dtypes[-1]))


def test_the_fused_reference_is_what_the_cpu_engine_computes(tmp_path):
    """codegen.reference must equal the CPU engine's blocked pass, per-step parameters included."""
    import pyarrow.parquet as pq

    from shardsmith.compiler.config import from_dict
    from shardsmith.runtime import compile_dataset

    rng = np.random.default_rng(11)
    n = 2000
    a = rng.normal(0, 10, n)
    a[::9] = np.nan
    b = rng.normal(5, 3, n).astype(np.float32)
    pq.write_table(pa.table({"a": a, "b": b}), tmp_path / "in.parquet")
    graph = [{"op": "clip", "cols": ["a"], "lower": -5.0}, {"op": "clip", "cols": ["b"], "lower": 4.0},
             {"op": "fill_missing", "cols": ["a", "b"], "value": 1.5}, {"op": "log1p", "cols": ["a", "b"]},
             {"op": "bucketize", "cols": ["a"], "boundaries": [0.5, 1.0, 2.0], "out": ["a_b"]}]
    cfg = from_dict({"name": "t", "source": {"paths": [str(tmp_path / "in.parquet")]}, "graph": graph,
                     "split": {"fractions": {"train": 1.0}, "fit_on": None},
                     "output": {"dir": str(tmp_path / "out"), "shard_rows": 10**6}, "engine": {"cluster": "inprocess"}})
    compile_dataset(cfg, log=lambda *a: None)
    got = pq.read_table(tmp_path / "out" / "train" / "part-00000.parquet")
    clip_a = codegen.reference([Clip(cols=("a",), lower=-5.0)], [[{"lo": -5.0}]], ("float64",), a[:, None])
    clip_b = codegen.reference([Clip(cols=("b",), lower=4.0)], [[{"lo": 4.0}]], ("float32",),
                               b.astype(np.float64)[:, None])
    ops = [FillMissing(cols=("a",), value=1.5), Log1p(cols=("a",))]
    pa_ = codegen.reference(ops, [[{"fill": 1.5}, {}]], ("float64", "float64"), clip_a)
    pb = codegen.reference(ops, [[{"fill": 1.5}, {}]], ("float32", "float32"), clip_b)
    np.testing.assert_array_equal(got["a"].to_numpy(), pa_[:, 0])
    np.testing.assert_array_equal(got["b"].to_numpy(), pb[:, 0].astype(np.float32))
    buckets = codegen.reference([Bucketize(cols=("a",), boundaries=(0.5, 1.0, 2.0))],
                                [[{"boundaries": np.array([0.5, 1.0, 2.0])}]], ("int32",), pa_)
    assert got["a_b"].null_count == np.isnan(buckets[:, 0]).sum() > 0
    np.testing.assert_array_equal(got["a_b"].to_numpy(zero_copy_only=False), buckets[:, 0])  # NaN: null


# --- categorify lookups -----------------------------------------------------------------------------
def _index_in(arr, vocab):
    ids = pc.index_in(arr, value_set=vocab).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32) + 3
    ids[ids == 2] = 1
    ids[~np.asarray(arr.is_valid())] = 2
    return ids


def _string_lookup(lib, arr, vocab, vhash_fn=None):
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    chars = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    valid = np.asarray(arr.is_valid())
    h = CpuBackend().hash(arr, 0) if vhash_fn is None else vhash_fn(arr)
    vh = CpuBackend().hash(vocab, 0) if vhash_fn is None else vhash_fn(vocab)
    order = np.argsort(vh, kind="stable").astype(np.int32)
    sorted_vh = np.ascontiguousarray(vh[order])
    voff = np.frombuffer(vocab.buffers()[1], dtype=np.int32)[vocab.offset : vocab.offset + len(vocab) + 1]
    vchars = np.frombuffer(vocab.buffers()[2], dtype=np.uint8) if len(vocab) else np.zeros(1, np.uint8)
    out = np.empty(len(arr), dtype=np.int32)
    mask = hostcc.bitmask(valid)
    lib.ss_categorify_str32(hostcc.ptr(offsets), hostcc.ptr(chars), hostcc.ptr(mask), I64(0), hostcc.ptr(h),
                            hostcc.ptr(sorted_vh), hostcc.ptr(order), hostcc.ptr(voff),
                            hostcc.ptr(vchars), I64(len(vocab)), hostcc.ptr(out), I64(len(arr)))
    return out


def test_string_categorify_lookup_matches_index_in(lookuplib):
    rng = np.random.default_rng(12)
    pool = _random_strings(rng, 300)
    strings = [pool[i] for i in rng.integers(0, 300, 5000)]
    arr = pa.array(strings, mask=rng.random(5000) < 0.05)
    vocab = pc.unique(pa.array(pool[:200]))
    np.testing.assert_array_equal(_string_lookup(lookuplib, arr, vocab), _index_in(arr, vocab))


def test_string_categorify_lookup_survives_hash_collisions(lookuplib):
    """Force every hash to collide: the byte comparison alone must still find the right entry."""
    rng = np.random.default_rng(13)
    pool = _random_strings(rng, 60)
    arr = pa.array([pool[i] for i in rng.integers(0, 60, 800)])
    vocab = pc.unique(pa.array(pool[:40]))
    same = lambda a: np.zeros(len(a), dtype=np.uint64)  # noqa: E731
    np.testing.assert_array_equal(_string_lookup(lookuplib, arr, vocab, same), _index_in(arr, vocab))


def test_string_categorify_with_an_empty_vocabulary(lookuplib):
    arr = pa.array(["a", None, ""])
    np.testing.assert_array_equal(_string_lookup(lookuplib, arr, pa.array([], pa.string())), [1, 2, 1])


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "float32", "float64", "bool"])
def test_fixed_width_categorify_matches_index_in(dtype):
    rng = np.random.default_rng(14)
    n = 3000
    if dtype == "bool":
        values = rng.random(n) < 0.3
    elif dtype.startswith("float"):
        values = rng.integers(-6, 6, n).astype(dtype)
        values[::7], values[::11], values[::13] = np.nan, -0.0, 0.0  # Arrow tells -0.0 from 0.0
    else:
        values = rng.integers(0, 60, n).astype(dtype)
    valid = rng.random(n) > 0.1
    arr = pa.array(values, mask=~valid)
    distinct = pc.value_counts(arr.drop_null()).field("values")
    vocab = distinct.take(pa.array(rng.permutation(len(distinct))[: max(1, 2 * len(distinct) // 3)]))
    sk, order = L.sorted_vocabulary(L.exact_keys(vocab.to_numpy(zero_copy_only=False)))
    ids = L.categorify_ids(L.exact_keys(values), valid, sk, order)
    np.testing.assert_array_equal(ids, _index_in(arr, vocab))


# --- numeric casts ----------------------------------------------------------------------------------
def _cast_values(rng, dtype):
    if dtype == "bool":
        return rng.random(400) < 0.5
    if dtype.startswith("float"):
        special = [np.nan, np.inf, -np.inf, 0.5, -0.0, 2.0**24, 2.0**24 + 2, 2.0**53, 2.0**63, -2.0**63, 2.0**64,
                   255.0, 256.0, -1.0, 1e300, 127.0, -128.0, -129.0, 65535.0, 4294967295.0]
        with np.errstate(over="ignore"):
            return np.concatenate([np.array(special), rng.normal(0, 1e3, 200), rng.integers(-300, 300, 200)]
                                  ).astype(dtype)
    info = np.iinfo(dtype)
    edge = [e for e in (info.min, info.max, 0, 1, 127, 128, 255, 256, 2**24, 2**24 + 1, 2**31, 2**53, 2**53 + 1)
            if info.min <= e <= info.max]
    return np.concatenate([np.array(edge, dtype=dtype), rng.integers(info.min, info.max, 300, dtype=dtype,
                                                                     endpoint=True)])


@pytest.mark.parametrize("src", casts.NUMERIC)
def test_numeric_casts_match_arrow_safe_casts(src):
    from shardsmith.ir.dtypes import ARROW_TYPES

    rng = np.random.default_rng(len(src))
    values = _cast_values(rng, src)
    for dst in casts.NUMERIC:
        with np.errstate(over="ignore", invalid="ignore"):
            out, failed = casts.cast(values, src, dst)
        expected_failed = np.zeros(len(values), dtype=bool)
        expected = []
        for i, v in enumerate(values):
            try:
                expected.append(pc.cast(pa.array([v]), ARROW_TYPES[dst], safe=True)[0].as_py())
            except pa.ArrowInvalid:
                expected_failed[i] = True
                expected.append(None)
        np.testing.assert_array_equal(failed, expected_failed, err_msg=f"{src} -> {dst}")
        got = [None if f else o.item() for o, f in zip(out, failed)]
        assert [g if g == g else "nan" for g in got] == [e if e == e else "nan" for e in expected], f"{src} -> {dst}"


# --- engine.float_mode: fast --------------------------------------------------------------------------
def _float32_chain(rng, k):
    ops, per_op = [], []
    for _ in range(int(rng.integers(1, 6))):
        op, p = _random_op(rng, k)
        while isinstance(op, Bucketize):
            op, p = _random_op(rng, k)
        ops.append(op)
        per_op.append(p)
    return ops, [[per_op[j][c] for j in range(len(ops))] for c in range(k)]


@pytest.mark.parametrize("trial", range(12))
def test_fast_mode_host_build_matches_the_float32_reference(trial):
    """A fast-mode kernel against NumPy in float32 (codegen.reference_fast): equal but for libm's
    log1pf and NumPy's float32 log1p, which may differ by an ulp (stated tolerance: 1e-6 relative,
    1e-6 absolute; on this machine they agree to the bit)."""
    rng = np.random.default_rng(500 + trial)
    k, n = int(rng.integers(1, 4)), int(rng.integers(1, 3000))
    ops, params = _float32_chain(rng, k)
    layout = codegen.layout_of(params[0])
    dtypes = ("float32",) * len(ops)
    src = codegen.render(ops, layout, "float32", dtypes, "fast")
    assert src.text != codegen.render(ops, layout, "float32", dtypes).text
    inputs = [rng.permutation(_fixed_values(rng, np.float32, max(n, 12))[:n]) for _ in range(k)]
    valids = [rng.random(n) > 0.2 for _ in range(k)]
    out, out_valid, _ = hostcc.run_fused(src, inputs, valids, np.float32, *codegen.pack(layout, params))
    x = np.stack([np.where(v, i.astype(np.float64), np.nan) for i, v in zip(inputs, valids)], axis=1)
    ref = codegen.reference_fast(ops, params, dtypes, x)
    for c in range(k):
        np.testing.assert_array_equal(out_valid[c], ~np.isnan(ref[:, c]))
        np.testing.assert_allclose(out[c][out_valid[c]], ref[:, c][out_valid[c]], rtol=1e-6, atol=1e-6)


def test_fast_mode_is_within_its_documented_tolerance_of_exact():
    """The demo pipeline's chain on demo data: fast mode's results differ from the exact ones (it is
    another arithmetic) by no more than codegen.FAST_TOLERANCE."""
    from shardsmith.demo import block

    table = block(50_000, 0, 0)
    xs = [table[f"I{i}"].to_numpy(zero_copy_only=False).astype(np.float32) for i in range(1, 14)]
    ops = [FillMissing(cols=("a",), value=0.0), Clip(cols=("a",), lower=0.0), Log1p(cols=("a",)),
           Normalize(cols=("a",))]
    params = []
    for x in xs:
        logs = np.log1p(np.maximum(np.nan_to_num(x.astype(np.float64)), 0.0)).astype(np.float32).astype(np.float64)
        params.append([{"fill": 0.0}, {"lo": 0.0}, {}, {"mean": float(logs.mean()), "std": float(logs.std())}])
    layout, dtypes = codegen.layout_of(params[0]), ("float32",) * 4
    src = codegen.render(ops, layout, "float32", dtypes, "fast")
    out, _, _ = hostcc.run_fused(src, xs, [None] * len(xs), np.float32, *codegen.pack(layout, params))
    fast = np.stack(out, axis=1).astype(np.float64)
    exact = codegen.reference(ops, params, dtypes, np.stack([x.astype(np.float64) for x in xs], axis=1))
    rtol, atol = codegen.FAST_TOLERANCE
    assert (fast != exact).mean() > 0.1  # really another arithmetic
    np.testing.assert_allclose(fast, exact, rtol=rtol, atol=atol)
