"""The shardsmith hash against the reference xxHash implementation and published vectors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from shardsmith.backends import get_backend
from shardsmith.kernels import xxhash64 as xx

# Published XXH64 test vectors (xxHash's documentation and test suite).
PUBLISHED = [
    (b"", 0, 0xEF46DB3751D8E999),
    (b"a", 0, 0xD24EC4F1A98C6E5B),
    (b"abc", 0, 0x44BC2CF5AD770999),
    (b"message digest", 0, 0x066ED728FCEEB3BE),
    (b"abcdefghijklmnopqrstuvwxyz", 0, 0xCFE1F278FA89835C),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 0, 0xAAA46907D3047814),
    (b"12345678901234567890123456789012345678901234567890123456789012345678901234567890", 0, 0xE04A477F19EE145D),
]


@pytest.mark.parametrize("data,seed,expected", PUBLISHED)
def test_published_vectors(data, seed, expected):
    assert xx.xxh64_bytes(data, seed) == expected


def test_strings_match_reference_for_every_length_and_seed():
    rng = np.random.default_rng(7)
    strings = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in list(range(0, 130)) * 3]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in strings])])
    data = np.frombuffer(b"".join(strings), dtype=np.uint8)
    for seed in (0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15):
        got = xx.xxh64_strings(offsets, data, seed)
        assert [int(g) for g in got] == [xxhash.xxh64_intdigest(s, seed) for s in strings]


def test_per_row_seeds_chain():
    words = np.arange(100, dtype=np.uint64) * np.uint64(0x1234567)
    seeds = np.arange(100, dtype=np.uint64) ** np.uint64(3)
    got = xx.xxh64_u64(words, seeds)
    want = [xxhash.xxh64_intdigest(int(w).to_bytes(8, "little"), int(s)) for w, s in zip(words, seeds)]
    assert [int(g) for g in got] == want


def test_ints_floats_and_nulls_follow_the_spec(cpu_kernels):
    be = get_backend("cpu", cpu_kernels)
    ints = pa.array([0, -1, 5, None, 2**62], type=pa.int64())
    h = be.hash(ints, 42)
    want = [xxhash.xxh64_intdigest(int(v).to_bytes(8, "little", signed=True), 42) for v in (0, -1, 5)]
    assert [int(x) for x in h[:3]] == want
    assert int(h[3]) == xxhash.xxh64_intdigest(b"", 42 ^ xx.NULL_SEED_XOR)
    # Widths do not matter: int8 5 and int64 5 hash alike; float32 1.5 and float64 1.5 too.
    assert int(be.hash(pa.array([5], pa.int8()), 42)[0]) == int(h[2])
    f32 = be.hash(pa.array([1.5, -0.0, float("nan")], pa.float32()), 3)
    f64 = be.hash(pa.array([1.5, 0.0, float("nan")], pa.float64()), 3)
    assert list(f32) == list(f64)
    assert int(f64[0]) == xxhash.xxh64_intdigest(np.float64(1.5).tobytes(), 3)
    assert int(f64[2]) == xxhash.xxh64_intdigest((0x7FF8000000000000).to_bytes(8, "little"), 3)


def test_string_columns_with_offsets_nulls_and_large_types(cpu_kernels):
    be = get_backend("cpu", cpu_kernels)
    values = ["", "a", None, "héllo wörld", "x" * 70, None, "tail"]
    arr = pa.array(values)
    for column in (arr, arr.slice(2), pa.array(values, pa.large_string()), pa.chunked_array([arr[:3], arr[3:]])):
        sub = values[len(values) - len(column):]
        got = be.hash(column, 9)
        want = [xxhash.xxh64_intdigest(v.encode(), 9) if v is not None
                else xxhash.xxh64_intdigest(b"", 9 ^ xx.NULL_SEED_XOR) for v in sub]
        assert [int(g) for g in got] == want


def test_buckets_and_unit_interval():
    h = np.array([0, 2**64 - 1, 12345], dtype=np.uint64)
    assert list(xx.to_buckets(h, 10)) == [0, (2**64 - 1) % 10, 5]
    assert xx.to_buckets(h, 10).dtype == np.int32
    assert xx.to_buckets(h, 2**40).dtype == np.int64
    assert list(xx.to_unit53(h)) == [0, 2**53 - 1, 12345 >> 11]


@pytest.mark.parametrize("width", [0, 1, 3, 4, 7, 8, 12, 31, 32, 33, 64, 70])
def test_equal_length_strings_take_the_fast_path_with_the_same_result(width):
    rng = np.random.default_rng(width)
    strings = [bytes(rng.integers(0, 256, width, dtype=np.uint8)) for _ in range(200)]
    offsets = np.arange(0, width * 200 + 1, max(width, 1))[:201] if width else np.zeros(201, np.int64)
    data = np.frombuffer(b"".join(strings), dtype=np.uint8)
    seeds = rng.integers(0, 2**63, 200, dtype=np.int64).view(np.uint64)
    got = xx.xxh64_strings(offsets, data, seeds)
    assert [int(g) for g in got] == [xxhash.xxh64_intdigest(s, int(k)) for s, k in zip(strings, seeds)]


def test_timestamps_hash_by_value_whatever_their_unit():
    """The same instants stored as timestamp[s], [ms], [us] and [ns] hash alike (and as their
    microseconds since the epoch); a date hashes as its day count."""
    be = get_backend("cpu")
    seconds = np.array([0, -1, 86_399, 1_700_000_000, -2_000_000_000, 9_000_000_000], dtype=np.int64)
    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    hashes = {unit: be.hash(pa.array(seconds * k, mask=np.arange(6) == 5).view(pa.timestamp(unit)), 11)
              for unit, k in scale.items()}
    for unit in scale:
        np.testing.assert_array_equal(hashes[unit], hashes["us"], err_msg=unit)
    micros = [xxhash.xxh64_intdigest(int(s * 1_000_000).to_bytes(8, "little", signed=True), 11) for s in seconds[:5]]
    assert [int(h) for h in hashes["us"][:5]] == micros
    assert int(hashes["us"][5]) == xxhash.xxh64_intdigest(b"", 11 ^ xx.NULL_SEED_XOR)
    ns = be.hash(pa.array([1999, -1, -1000, -1001], pa.int64()).view(pa.timestamp("ns")), 2)  # floored to us
    assert list(ns) == list(be.hash(pa.array([1, -1, -1, -2], pa.int64()), 2))
    tz = be.hash(pa.array(seconds[:5] * 1000).view(pa.timestamp("ms", tz="Europe/Paris")), 11)
    np.testing.assert_array_equal(tz, hashes["us"][:5])  # a time zone does not change the instant
    days = be.hash(pa.array([0, 19_000], pa.int32()).view(pa.date32()), 5)
    assert list(days) == list(be.hash(pa.array([0, 19_000], pa.int64()), 5))


def test_one_value_forms_are_the_column_hash():
    """The serving row path's hash of one Python value (kernels/xxhash64.py ``hash_int``,
    ``hash_float``, ``hash_bytes``) against the backend's hash of the Arrow column, edge values and
    nulls, under several seeds."""
    be = get_backend("cpu", "numpy")
    cases = [
        (pa.int64(), [None, 0, 1, -1, 2**63 - 1, -2**63, 12345], xx.hash_int),
        (pa.uint64(), [None, 0, 2**64 - 1, 2**63], xx.hash_int),
        (pa.int8(), [None, -128, 127], xx.hash_int),
        (pa.float64(), [None, 0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e300, 5e-324, 2.5], xx.hash_float),
        (pa.string(), [None, "", "a", "é" * 9, "68fd1e64", "x" * 33], lambda v, s: xx.hash_bytes(
            None if v is None else v.encode(), s)),
    ]
    for seed in (0, 7, 2**64 - 1, int(xx.NULL_SEED_XOR)):
        for t, values, one in cases:
            want = be.hash(pa.array(values, type=t), seed)
            assert [one(v, seed) for v in values] == [int(h) for h in want], (t, seed)
