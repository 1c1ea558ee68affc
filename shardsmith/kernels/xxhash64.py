"""The shardsmith hash: seeded 64-bit xxHash (XXH64), vectorised with NumPy.

This module is the specification that every backend reproduces bit for bit.

What is hashed, for a value ``v`` and a 64-bit ``seed``:

* integers and booleans (any width, signed or unsigned): ``v`` converted to int64 (two's
  complement, so uint64 values keep their bit pattern), as 8 little-endian bytes;
* floats (float16/32/64): ``v`` converted to float64, as its 8 little-endian IEEE-754 bytes, with
  ``-0.0`` hashed as ``+0.0`` and every NaN as the canonical quiet NaN ``0x7FF8000000000000``;
* strings: the UTF-8 bytes of ``v``; binary: its bytes;
* dates: the day count since 1970-01-01 as an integer (so a date hashes as that int);
* timestamps: by value, in one canonical unit whatever the unit they are stored in: microseconds
  since 1970-01-01 UTC as an integer (seconds and milliseconds are scaled up, wrapping like int64
  beyond +-292,000 years; nanoseconds are floored to microseconds, so the same instant stored as
  ``timestamp[s]``, ``[ms]``, ``[us]`` or ``[ns]`` hashes the same, and splits the same);
* null (and, in float columns, NaN is *not* null: it hashes as the canonical NaN above):
  the empty byte string with seed ``seed ^ NULL_SEED_XOR``.

A multi-column hash (``hashed_cross``) chains: ``h = hash(c0, seed)``, then ``h = hash(ci, h)`` for
each further column. A hash maps to ``num_buckets`` buckets as the unsigned remainder
``h % num_buckets``. A hash maps to the unit interval (for splits) as ``(h >> 11) / 2**53``.

>>> hex(xxh64_bytes(b"", 0))
'0xef46db3751d8e999'
"""

from __future__ import annotations

import struct

import numpy as np
import xxhash

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
NULL_SEED_XOR = 0x9E3779B97F4A7C15
CANONICAL_NAN = np.uint64(0x7FF8000000000000)
_M64 = (1 << 64) - 1


def _u64(x) -> np.uint64:
    return np.uint64(int(x) & _M64)


def _rotl(x, r: int):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _round(acc, lane):
    return _rotl(acc + lane * P2, 31) * P1


def _avalanche(h):
    h = h ^ (h >> np.uint64(33))
    h = h * P2
    h = h ^ (h >> np.uint64(29))
    h = h * P3
    return h ^ (h >> np.uint64(32))


def _seeds(seed, n: int) -> np.ndarray:
    """A per-row uint64 seed array from a scalar or an array (chained hashes pass arrays)."""
    if np.ndim(seed) == 0:
        return np.full(n, _u64(seed), dtype=np.uint64)
    return np.asarray(seed, dtype=np.uint64)


def xxh64_u64(words: np.ndarray, seed=0) -> np.ndarray:
    """XXH64 of each element's 8 little-endian bytes. ``words`` is uint64 (any bit pattern)."""
    words = np.asarray(words, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _seeds(seed, len(words)) + P5 + np.uint64(8)
        h = h ^ _round(np.uint64(0), words)
        h = _rotl(h, 27) * P1 + P4
        return _avalanche(h)


def float_words(values: np.ndarray) -> np.ndarray:
    """The uint64 words hashed for float values: float64 bits, -0.0 -> +0.0, NaN canonical."""
    v = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 + 0.0 == +0.0 in round-to-nearest
    bits = v.view(np.uint64).copy()
    bits[np.isnan(v)] = CANONICAL_NAN
    return bits


def int_words(values: np.ndarray) -> np.ndarray:
    """The uint64 words hashed for integer or boolean values: the int64 two's complement."""
    v = np.asarray(values)
    if v.dtype == np.uint64:
        return v
    return v.astype(np.int64).view(np.uint64)


# Per stored unit: (multiplier, divisor) that give microseconds (a divisor floors toward -inf).
TIMESTAMP_UNITS = {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}


def timestamp_micros(values, unit: str, xp=np):
    """int64 timestamps stored in ``unit`` (s, ms, us, ns) as the canonical microseconds.

    >>> timestamp_micros(np.array([-1, 1999], dtype=np.int64), "ns").tolist()
    [-1, 1]
    """
    mult, div = TIMESTAMP_UNITS[unit]
    values = values.astype(np.int64, copy=False)
    if div != 1:
        return xp.floor_divide(values, np.int64(div))
    if mult != 1:
        with np.errstate(over="ignore"):
            return values * np.int64(mult)
    return values


def _read_u64(aligned: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Unaligned little-endian uint64 loads at byte offsets ``pos`` of a zero-padded buffer."""
    word = pos >> np.int64(3)
    shift = ((pos & np.int64(7)) * 8).astype(np.uint64)
    lo, hi = aligned[word], aligned[word + 1]
    spliced = (lo >> shift) | (hi << (np.uint64(64) - shift))
    return np.where(shift == 0, lo, spliced)


def xxh64_strings(offsets: np.ndarray, data: np.ndarray, seed=0) -> np.ndarray:
    """XXH64 of each variable-length byte string given Arrow-style ``offsets`` and ``data``.

    Vectorised over rows: each loop step advances every row that still has input of that size, so
    the cost is proportional to the longest string times the row count, not a Python loop per row.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    starts, lens = offsets[:-1], np.diff(offsets)
    base = int(offsets[0]) if n else 0
    if n and lens.min() == lens.max():  # every string as long as the others (ids, hex keys)
        width = int(lens[0])
        block = np.asarray(data, dtype=np.uint8)[base : base + n * width].reshape(n, width)
        return _fixed_width(block, _seeds(seed, n))
    raw = np.asarray(data, dtype=np.uint8)[base : int(offsets[-1]) if n else 0]
    padded = np.zeros(((len(raw) + 16) // 8 + 2) * 8, dtype=np.uint8)
    padded[: len(raw)] = raw
    aligned = padded.view("<u8")
    pos = starts - base
    seeds = _seeds(seed, n)
    with np.errstate(over="ignore"):
        h = _stripes(aligned, pos, lens, seeds)
        h = h + lens.astype(np.uint64)
        consumed = (lens // 32) * 32
        h = _tail(aligned, pos + consumed, lens - consumed, h)
        return _avalanche(h)


def _stripes(aligned, pos, lens, seeds):
    """The 32-byte stripe phase: rows of 32+ bytes use four accumulators, others start at seed+P5."""
    h = seeds + P5
    long_rows = np.flatnonzero(lens >= 32)
    if len(long_rows) == 0:
        return h
    s = seeds[long_rows]
    v = [s + P1 + P2, s + P2, s.copy(), s - P1]
    p, nstripes = pos[long_rows], lens[long_rows] // 32
    for k in range(int(nstripes.max())):
        live = nstripes > k
        for j in range(4):
            lane = _read_u64(aligned, p[live] + 32 * k + 8 * j)
            v[j][live] = _round(v[j][live], lane)
    acc = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
    for j in range(4):
        acc = (acc ^ _round(np.uint64(0), v[j])) * P1 + P4
    h[long_rows] = acc
    return h


def _tail(aligned, pos, rem, h):
    """The tail phase: up to three 8-byte lanes, one 4-byte lane, then single bytes."""
    pos, rem = pos.copy(), rem.copy()
    while True:
        rows = np.flatnonzero(rem >= 8)
        if len(rows) == 0:
            break
        lane = _read_u64(aligned, pos[rows])
        h[rows] = _rotl(h[rows] ^ _round(np.uint64(0), lane), 27) * P1 + P4
        pos[rows] += 8
        rem[rows] -= 8
    rows = np.flatnonzero(rem >= 4)
    if len(rows):
        lane = _read_u64(aligned, pos[rows]) & np.uint64(0xFFFFFFFF)
        h[rows] = _rotl(h[rows] ^ (lane * P1), 23) * P2 + P3
        pos[rows] += 4
        rem[rows] -= 4
    while True:
        rows = np.flatnonzero(rem > 0)
        if len(rows) == 0:
            break
        byte = _read_u64(aligned, pos[rows]) & np.uint64(0xFF)
        h[rows] = _rotl(h[rows] ^ (byte * P5), 11) * P1
        pos[rows] += 1
        rem[rows] -= 1
    return h


def _fixed_width(block: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """XXH64 of each row of an (n, width) byte matrix: the same steps as the general path, on
    whole columns, without gathers or masks."""
    n, width = block.shape
    lanes_n = (width + 7) // 8
    padded = np.zeros((n, lanes_n * 8 + 8), dtype=np.uint8)
    padded[:, :width] = block
    lanes = padded.view("<u8")  # (n, lanes_n + 1): lane j is bytes 8j .. 8j+7 of each row
    with np.errstate(over="ignore"):
        if width >= 32:
            v = [seeds + P1 + P2, seeds + P2, seeds.copy(), seeds - P1]
            for k in range(width // 32):
                for j in range(4):
                    v[j] = _round(v[j], lanes[:, 4 * k + j])
            h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
            for j in range(4):
                h = (h ^ _round(np.uint64(0), v[j])) * P1 + P4
        else:
            h = seeds + P5
        h = h + np.uint64(width)
        pos = (width // 32) * 32
        while width - pos >= 8:
            h = _rotl(h ^ _round(np.uint64(0), lanes[:, pos // 8]), 27) * P1 + P4
            pos += 8
        if width - pos >= 4:
            word = block[:, pos : pos + 4].copy().view("<u4")[:, 0].astype(np.uint64)
            h = _rotl(h ^ (word * P1), 23) * P2 + P3
            pos += 4
        while pos < width:
            h = _rotl(h ^ (block[:, pos].astype(np.uint64) * P5), 11) * P1
            pos += 1
        return _avalanche(h)


def xxh64_bytes(data: bytes, seed: int = 0) -> int:
    """XXH64 of one byte string (a convenience over the vectorised path, used in tests and docs)."""
    offsets = np.array([0, len(data)], dtype=np.int64)
    return int(xxh64_strings(offsets, np.frombuffer(data, dtype=np.uint8), seed)[0])


# --- one value at a time, for the serving row path (backends/cpu/rows.py) ----------------------------
# The same hash of one Python value, through the xxhash package's XXH64 (C): a value costs well
# under a microsecond, where an array call's fixed cost is tens. tests/test_hash.py checks these
# against the vectorised path bit for bit.
_NULL_SEED_XOR = int(NULL_SEED_XOR)
_CANONICAL_NAN = struct.pack("<Q", int(CANONICAL_NAN))


def hash_int(v: int | None, seed: int) -> int:
    """The hash of an integer value (or null): its int64 two's complement, as ``int_words``."""
    return hash_bytes(None if v is None else (v & _M64).to_bytes(8, "little"), seed)


def hash_float(v: float | None, seed: int) -> int:
    """The hash of a float64 value (or null): -0.0 as +0.0, every NaN as the canonical NaN."""
    return hash_bytes(None if v is None else _CANONICAL_NAN if v != v else struct.pack("<d", v + 0.0), seed)


def hash_bytes(v: bytes | None, seed: int) -> int:
    """The hash of a string's UTF-8 bytes or a binary value, or of null (the empty string under
    the null seed): what the forms above hash, once in bytes."""
    return xxhash.xxh64_intdigest(b"", seed ^ _NULL_SEED_XOR) if v is None else xxhash.xxh64_intdigest(v, seed)


def null_hash(seed) -> np.ndarray | np.uint64:
    """The hash of a null value under ``seed`` (a scalar or an array of per-row seeds)."""
    seeds = np.atleast_1d(np.asarray(seed, dtype=np.uint64)) ^ np.uint64(NULL_SEED_XOR)
    empty = np.zeros(len(seeds) + 1, dtype=np.int64)
    out = xxh64_strings(empty, np.zeros(0, dtype=np.uint8), seeds)
    return out if np.ndim(seed) else out[0]


def to_buckets(h: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bucket ids ``h % num_buckets`` as int32 when they fit, else int64."""
    dtype = np.int32 if num_buckets <= 2**31 else np.int64
    return (h % np.uint64(num_buckets)).astype(dtype)


def to_unit53(h: np.ndarray) -> np.ndarray:
    """The top 53 bits of each hash: an integer in [0, 2**53), i.e. a uniform fraction times 2**53."""
    return (h >> np.uint64(11)).astype(np.int64)
