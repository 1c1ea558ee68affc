"""Content digests (kernels/digest.py): the CPU engine's (from Arrow buffers) against a naive
reference written from the spec's text, value by value; the GPU kernel's host build against the
xxhash package; what changes a digest and what does not (writers, encodings, chunking, NaN payloads)."""

from __future__ import annotations

import ctypes
import math
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from shardsmith.backends.arrow import column_digest, table_digests
from shardsmith.kernels import digest as D
from shardsmith.kernels import hostcc
from shardsmith.kernels.sources import static_source

_PACK = {"int8": "<b", "int16": "<h", "int32": "<i", "int64": "<q", "uint8": "<B", "uint16": "<H", "uint32": "<I",
         "uint64": "<Q", "float16": "<e", "float32": "<f", "float64": "<d", "bool": "<B", "date": "<i",
         "timestamp": "<q"}
_NAN = {"float16": b"\x00\x7e", "float32": b"\x00\x00\xc0\x7f", "float64": b"\x00\x00\x00\x00\x00\x00\xf8\x7f"}


def naive(values: list, dtype: str, unit: str | None = None) -> int:
    """The spec, literally: Python values (None for null; dates and timestamps as integers)."""
    n, k = len(values), sum(v is None for v in values)
    if dtype in ("string", "binary"):
        raw = [b"" if v is None else v.encode() if isinstance(v, str) else v for v in values]
        sections = [b"".join(struct.pack("<Q", len(r)) for r in raw), b"".join(raw)]
    else:
        width = struct.calcsize(_PACK[dtype])
        sections = [b"".join(b"\0" * width if v is None else _NAN[dtype] if isinstance(v, float) and math.isnan(v)
                             else struct.pack(_PACK[dtype], int(v) if dtype == "bool" else v) for v in values)]
    if k:
        sections.append(bytes(0 if v is None else 1 for v in values))
    tok = f"timestamp[{unit}]" if dtype == "timestamp" else dtype
    body = b"shardsmith-column-1\0" + tok.encode() + b"\0" + struct.pack("<QQ", n, k)
    for sec in sections:
        body += struct.pack("<Q", len(sec))
        blocks = [sec[i : i + 65536] for i in range(0, len(sec), 65536)]
        body += b"".join(struct.pack("<Q", xxhash.xxh64_intdigest(b)) for b in blocks)
    return xxhash.xxh64_intdigest(body)


def _nan_with_payload(bits: int, dtype) -> float:
    return np.array([bits], dtype={np.float64: np.uint64, np.float32: np.uint32}[dtype]).view(dtype)[0]


CASES = {
    "int8": (pa.array([-128, 127, None, 0, 5], pa.int8()), [-128, 127, None, 0, 5]),
    "int16": (pa.array([-(2**15), None, 2**15 - 1], pa.int16()), [-(2**15), None, 2**15 - 1]),
    "int32": (pa.array([1, 2, None, -7], pa.int32()), [1, 2, None, -7]),
    "int64": (pa.array([2**63 - 1, -(2**63), None], pa.int64()), [2**63 - 1, -(2**63), None]),
    "uint8": (pa.array([0, 255, None], pa.uint8()), [0, 255, None]),
    "uint16": (pa.array([65535, 1], pa.uint16()), [65535, 1]),
    "uint32": (pa.array([2**32 - 1, None], pa.uint32()), [2**32 - 1, None]),
    "uint64": (pa.array([2**64 - 1, 0, None], pa.uint64()), [2**64 - 1, 0, None]),
    "float16": (pa.array(np.array([1.5, np.nan, -0.0, np.inf], np.float16), pa.float16()),
                [1.5, math.nan, -0.0, math.inf]),
    "float32": (pa.array(np.array([1.5, np.nan, -0.0, 3e38, _nan_with_payload(0xFFC00001, np.float32)], np.float32)),
                [1.5, math.nan, -0.0, float(np.float32(3e38)), math.nan]),
    "float64": (pa.array([1.25, None, -0.0, -math.inf, _nan_with_payload(0x7FF0000000000001, np.float64)]),
                [1.25, None, -0.0, -math.inf, math.nan]),
    "bool": (pa.array([True, False, None, True]), [True, False, None, True]),
    "string": (pa.array(["", "é€😀", None, "abc"]), ["", "é€😀", None, "abc"]),
    "binary": (pa.array([b"\x00\xff", None, b""]), [b"\x00\xff", None, b""]),
    "date": (pa.array([0, -3, None, 20000], pa.int32()).cast(pa.date32()), [0, -3, None, 20000]),
    "timestamp": (pa.array([0, 10**15, None], pa.timestamp("us")), [0, 10**15, None]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_dtype_matches_the_spec(name):
    arr, values = CASES[name]
    unit = arr.type.unit if pa.types.is_timestamp(arr.type) else None
    assert column_digest(arr) == naive(values, name, unit)


def test_nulls_that_own_bytes_and_sliced_chunked_dictionary_large_layouts():
    # A null whose slot holds bytes (legal in Arrow): the spec gives it none.
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little"))
    owned = pa.StringArray.from_buffers(3, pa.py_buffer(np.array([0, 2, 5, 6], np.int32).tobytes()),
                                        pa.py_buffer(b"abXYZc"), validity, null_count=1)
    assert column_digest(owned) == naive(["ab", None, "c"], "string")
    ints = pa.array(np.arange(100, dtype=np.int64), mask=np.arange(100) % 9 == 0)
    want = naive([None if i % 9 == 0 else i for i in range(10, 90)], "int64")
    assert column_digest(ints.slice(10, 80)) == want
    assert column_digest(pa.chunked_array([ints.slice(10, 30), ints.slice(40, 50)])) == want
    words = ["x", "yy", None, "x"] * 50
    assert column_digest(pa.array(words).dictionary_encode()) == naive(words, "string")
    assert column_digest(pa.array(words, pa.large_string())) == naive(words, "string")
    strings = pa.array(["ab", None, "c", "de"]).slice(1)
    assert column_digest(strings) == naive([None, "c", "de"], "string")


def test_columns_of_many_blocks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40_000)  # 320,000 bytes: five blocks
    x[::1000] = np.nan
    arr = pa.array(x, mask=rng.random(x.size) < 0.01)
    assert column_digest(arr) == naive(arr.to_pylist(), "float64")
    long = ["é" * int(v) for v in rng.integers(0, 40, 5000)]
    assert column_digest(pa.array(long)) == naive(long, "string")


def test_what_changes_a_digest_and_what_does_not():
    base = pa.array([1.0, 2.0, math.nan, 0.0], pa.float32())
    other_nan = pa.array(np.array([1.0, 2.0, _nan_with_payload(0x7F800001, np.float32), 0.0], np.float32))
    assert column_digest(base) == column_digest(other_nan)  # a NaN is a NaN
    for changed in (pa.array([1.0, 2.0, math.nan, -0.0], pa.float32()),  # -0.0 is a value of its own
                    pa.array([1.0, 2.0, None, 0.0], pa.float32()),  # null is not NaN
                    pa.array([2.0, 1.0, math.nan, 0.0], pa.float32()),  # order
                    pa.array([1.0, 2.0, math.nan, 0.0], pa.float64())):  # dtype
        assert column_digest(changed) != column_digest(base)
    assert column_digest(pa.array([1, None], pa.int32())) != column_digest(pa.array([1, 0], pa.int32()))
    assert column_digest(pa.array(["a", "bc"])) != column_digest(pa.array(["ab", "c"]))  # lengths count
    a, b = D.shard_digest({"x": 1, "y": 2}), D.shard_digest({"y": 2, "x": 1})
    assert a != b and D.shard_digest({"x": 1, "z": 2}) != a  # column order and names count
    assert D.dataset_digest({"train": [1, 2]}) != D.dataset_digest({"train": [1], "valid": [2]})


def test_any_writer_any_encoding_reads_back_to_the_same_digests(tmp_path):
    """Identity by content: the same values written by different writers and settings."""
    rng = np.random.default_rng(3)
    n = 20_000
    table = pa.table({"i": pa.array(rng.integers(0, 50, n).astype(np.int32)),
                      "f": pa.array(rng.normal(size=n).astype(np.float32), mask=rng.random(n) < 0.05),
                      "s": pa.array([f"v{v}" for v in rng.integers(0, 300, n)], mask=rng.random(n) < 0.05),
                      "b": pa.array(rng.random(n) < 0.5), "d": pa.array(rng.integers(0, 9999, n).astype(np.int32))
                      .cast(pa.date32())})
    want = table_digests(table)
    pq.write_table(table, tmp_path / "a.parquet", compression="zstd", row_group_size=3000)
    pq.write_table(table, tmp_path / "b.parquet", compression="snappy", use_dictionary=False, data_page_version="2.0",
                   row_group_size=7777, store_schema=False)
    import polars as pl

    pl.from_arrow(table).write_parquet(tmp_path / "c.parquet", compression="lz4", row_group_size=5000)
    for name in ("a", "b", "c"):
        back = pq.read_table(tmp_path / f"{name}.parquet")
        assert table_digests(back, {"s": "string"}) == want, name
    files = {p.read_bytes() for p in tmp_path.glob("*.parquet")}
    assert len(files) == 3  # three different files, one content


@pytest.mark.skipif(hostcc.compiler() is None, reason="no C++ compiler for the host build")
def test_the_span_kernel_matches_xxhash():
    lib = hostcc.build(static_source("xxhash64.cu"))
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, 300_000, dtype=np.uint8)
    starts = np.array([0, 1, 3, 100, 65536, 200_000, 7], dtype=np.int64)
    lens = np.array([0, 1, 31, 65536, 65536, 100_000, 32], dtype=np.int64)
    ptrs = (np.uint64(data.ctypes.data) + starts.astype(np.uint64)).astype(np.uint64)
    out = np.zeros(len(starts), dtype=np.uint64)
    lib.ss_xxh64_spans(hostcc.ptr(ptrs), hostcc.ptr(lens), hostcc.ptr(out), ctypes.c_longlong(len(starts)))
    want = [xxhash.xxh64_intdigest(data[s : s + n].tobytes()) for s, n in zip(starts, lens)]
    assert out.tolist() == want
