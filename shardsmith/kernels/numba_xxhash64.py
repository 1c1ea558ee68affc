"""The shardsmith hash (kernels/xxhash64.py, the specification) as compiled Numba loops.

One loop per column kind, each hashing every row in one pass and releasing the GIL: integers
(as int64 words), floats (float64 words, -0.0 and NaN canonical), and Arrow strings / binaries
(offsets + bytes). Each takes the column's validity bitmap (null rows hash as the empty string
under ``seed ^ NULL_SEED_XOR``) and a seed array of length 1 (one seed) or one per row (a chained
hash). :func:`split_ids` maps hashes to split indices (the top 53 bits against the thresholds).
Importing this module imports Numba; kernels/cpujit.py does it on a background thread.

All arithmetic is on uint64 (wrapping, as XXH64 wants); constants are typed uint64 so that Numba
never mixes in a signed or float type.
"""

from __future__ import annotations

from math import isnan

import numpy as np
from numba import njit

from shardsmith.kernels import xxhash64 as spec

U = np.uint64
P1, P2, P3, P4, P5 = spec.P1, spec.P2, spec.P3, spec.P4, spec.P5
NULL_SEED_XOR = U(spec.NULL_SEED_XOR)
CANONICAL_NAN = spec.CANONICAL_NAN
OPTIONS = dict(nogil=True, cache=True, boundscheck=False)


@njit(**OPTIONS)
def _rotl(x, r):
    return (x << U(r)) | (x >> U(64 - r))


@njit(**OPTIONS)
def _round(acc, lane):
    return _rotl(acc + lane * P2, 31) * P1


@njit(**OPTIONS)
def _merge(acc, v):
    return (acc ^ _round(U(0), v)) * P1 + P4


@njit(**OPTIONS)
def _avalanche(h):
    h = (h ^ (h >> U(33))) * P2
    h = (h ^ (h >> U(29))) * P3
    return h ^ (h >> U(32))


@njit(**OPTIONS)
def _lane8(h, word):
    return _rotl(h ^ _round(U(0), word), 27) * P1 + P4


@njit(**OPTIONS)
def _word(word, seed):
    """XXH64 of one 8-byte value."""
    return _avalanche(_lane8(seed + P5 + U(8), word))


@njit(**OPTIONS)
def _null(seed):
    """XXH64 of the empty string under the null seed."""
    return _avalanche((seed ^ NULL_SEED_XOR) + P5)


@njit(**OPTIONS)
def _read(data, p, nbytes):
    """``nbytes`` little-endian bytes of ``data`` from ``p`` (unaligned) as a uint64."""
    word = U(0)
    for k in range(nbytes):
        word |= U(data[p + k]) << U(8 * k)
    return word


@njit(**OPTIONS)
def _stripes(data, p, end, seed):
    """The 32-byte stripe phase of an input of 32 bytes or more: four accumulators, merged."""
    v1, v2, v3, v4 = seed + P1 + P2, seed + P2, seed, seed - P1
    while p + 32 <= end:
        v1 = _round(v1, _read(data, p, 8))
        v2 = _round(v2, _read(data, p + 8, 8))
        v3 = _round(v3, _read(data, p + 16, 8))
        v4 = _round(v4, _read(data, p + 24, 8))
        p += 32
    h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
    return _merge(_merge(_merge(_merge(h, v1), v2), v3), v4), p


@njit(**OPTIONS)
def _bytes(data, p, end, seed):
    """XXH64 of ``data[p:end]``: stripes, then 8-byte lanes, a 4-byte lane, single bytes."""
    length = U(end - p)
    h = seed + P5
    if end - p >= 32:
        h, p = _stripes(data, p, end, seed)
    h += length
    while p + 8 <= end:
        h = _lane8(h, _read(data, p, 8))
        p += 8
    if p + 4 <= end:
        h = _rotl(h ^ (_read(data, p, 4) * P1), 23) * P2 + P3
        p += 4
    while p < end:
        h = _rotl(h ^ (U(data[p]) * P5), 11) * P1
        p += 1
    return _avalanche(h)


@njit(**OPTIONS)
def _valid(valid, voff, i):
    j = voff + i
    return valid.shape[0] == 0 or ((valid[j >> 3] >> (j & 7)) & 1) != 0


@njit(**OPTIONS)
def hash_ints(values, valid, voff, seeds, out):
    """Integers (any width, signed or not) as their int64 two's complement."""
    step = 1 if seeds.shape[0] > 1 else 0
    for i in range(out.shape[0]):
        seed = seeds[i * step]
        out[i] = _word(U(np.int64(values[i])), seed) if _valid(valid, voff, i) else _null(seed)


@njit(**OPTIONS)
def hash_floats(values, valid, voff, seeds, out):
    """Floats as float64 bits, -0.0 as +0.0 (adding +0.0 does it), every NaN as the canonical one."""
    step = 1 if seeds.shape[0] > 1 else 0
    for i in range(out.shape[0]):
        seed = seeds[i * step]
        v = np.float64(values[i]) + 0.0
        word = CANONICAL_NAN if isnan(v) else np.float64(v).view(np.uint64)
        out[i] = _word(word, seed) if _valid(valid, voff, i) else _null(seed)


@njit(**OPTIONS)
def hash_strings(offsets, data, valid, voff, seeds, out):
    """Strings and binaries: the bytes between consecutive Arrow offsets (int32 or int64)."""
    step = 1 if seeds.shape[0] > 1 else 0
    for i in range(out.shape[0]):
        seed = seeds[i * step]
        if _valid(valid, voff, i):
            out[i] = _bytes(data, np.int64(offsets[i]), np.int64(offsets[i + 1]), seed)
        else:
            out[i] = _null(seed)


@njit(**OPTIONS)
def split_ids(h, thresholds, out):
    """The number of thresholds <= the top 53 bits of each hash (searchsorted, side right)."""
    for i in range(out.shape[0]):
        u = np.int64(h[i] >> U(11))
        k = 0
        while k < thresholds.shape[0] and thresholds[k] <= u:
            k += 1
        out[i] = k
