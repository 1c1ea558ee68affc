"""Exact, order-independent partial aggregates over float64 arrays, written once for NumPy and CuPy.

Float sums depend on the order of addition; shards must not depend on how rows were partitioned or
on which engine ran. So sums are exact: every float64 is ``m * 2**(E - 1074)`` with an integer
mantissa ``m < 2**53``; the mantissas are split into two halves of at most 27 bits and summed per
exponent with ``bincount`` (each per-exponent partial is an integer below 2**53, hence exact in
float64 and independent of the order the bins are filled, also with GPU atomics). The partial is
a Python int ``S`` with ``sum = S * 2**-1074``: merging is integer addition.

Quantiles come from a mergeable histogram over truncated float bits: each value is rounded toward
zero to ``bits`` mantissa bits, so a quantile is exact for values with at most ``bits + 1``
significant bits (every integer below ``2**(bits + 1)``) and has a relative error below ``2**-bits``
otherwise.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

SCALE_BITS = 1127  # sum = S * 2**-1127: the smallest subnormal is 2**-1074 with a 53-bit mantissa scale
_CHUNK = 1 << 16  # rows per bincount: cache-sized, and 2**16 * 2**27 < 2**53 keeps each bin exact
_GPU_CHUNK = 1 << 26  # rows per bincount on a GPU: the most that keeps each bin exact
_EXP_OFFSET = 1100  # frexp exponents lie in [-1073, 1024]
OFFSET = _EXP_OFFSET
_BINS = 2200


def exact_sum(x, xp=np) -> int:
    """The exact sum of finite float64 values ``x`` as an integer multiple of 2**-1127."""
    x = xp.asarray(x, dtype=xp.float64)
    # A GPU prefers few launches; atomics stay exact while each bin's sum stays below 2**53, i.e.
    # below 2**26 values of under 2**27 per launch.
    chunk = _CHUNK if xp is np else _GPU_CHUNK
    sum_hi = xp.zeros(_BINS, dtype=xp.int64)
    sum_lo = xp.zeros(_BINS, dtype=xp.int64)
    for start in range(0, len(x), chunk):
        idx, hi, lo = decompose(x[start : start + chunk], xp)
        sum_hi += xp.bincount(idx, weights=hi, minlength=_BINS).astype(xp.int64)
        sum_lo += xp.bincount(idx, weights=lo, minlength=_BINS).astype(xp.int64)
    sum_hi, sum_lo = _host(sum_hi, xp), _host(sum_lo, xp)
    total = 0
    for i in np.flatnonzero((sum_hi != 0) | (sum_lo != 0)):
        shift = int(i) - _EXP_OFFSET + SCALE_BITS  # one unit of lo is worth 2**(e - 53)
        total += (int(sum_hi[i]) << (shift - 27)) + (int(sum_lo[i]) << (shift - 53))
    return total


# float32 values: v = m * 2**(e - 150) with a signed integer mantissa |m| < 2**24 and e the biased
# exponent (1 for subnormals). Their float64 squares are exact: m**2 * 2**(2e - 300), m**2 < 2**48.
_F32_BINS = 256
_F32_BLOCK = 1 << 28  # rows whose per-exponent float64 sums of 24-bit integers stay exact (< 2**53)


def exact_sums_f32(x, xp=np) -> tuple[int, int]:
    """The exact sums of finite float32 values ``x`` and of their float64 squares, as integer
    multiples of 2**-1127: the same integers as :func:`exact_sum` of ``x.astype(float64)`` and of
    its squares, at about half the cost (a float32 mantissa needs one bincount, not two; on the
    host, fixed-point sums per chunk replace the bincounts: :func:`_f32_sums_host`).

    >>> x = np.array([0.1, -2.5, 3e-40], dtype=np.float32)
    >>> exact_sums_f32(x) == (exact_sum(x.astype(np.float64)), exact_sum(x.astype(np.float64) ** 2))
    True
    """
    if xp is np:
        return _f32_sums_host(np.ascontiguousarray(x, dtype=np.float32))
    s1, s2 = 0, 0
    for block in range(0, len(x), _F32_BLOCK):
        sums, hi, lo = _f32_bins(x[block : block + _F32_BLOCK], xp)
        s1 += _shifted(sums, lambda e: e - 150)
        s2 += _shifted(hi, lambda e: 2 * e - 300 + 24) + _shifted(lo, lambda e: 2 * e - 300)
    return s1, s2


def exact_sums_int(x, xp=np) -> tuple[int, int] | None:
    """The exact sums of integers ``x`` and of their squares, as integer multiples of 2**-1127
    (the same integers as :func:`exact_sum` of their float64 values and squares), by int64 sums;
    None where those could overflow or a square would round in float64 (|x| > 2**26).

    >>> exact_sums_int(np.array([3, -4], dtype=np.int8)) == (exact_sum(np.array([-1.0])), exact_sum(np.array([25.0])))
    True
    """
    if len(x) == 0:
        return 0, 0
    x = x.astype(xp.int64)
    bound = int(xp.abs(x).max())
    if bound > 1 << 26 or bound * bound * len(x) >= 1 << 63:
        return None
    return int(x.sum()) << SCALE_BITS, int((x * x).sum()) << SCALE_BITS


def _f32_bins(x, xp):
    """Per biased exponent: the sum of the signed mantissas, and of the squared mantissas' high and
    low 24 bits (each sum an integer below 2**53, exact in float64 whatever the order)."""
    chunk = _CHUNK if xp is np else _GPU_CHUNK
    sums, hi, lo = (xp.zeros(_F32_BINS, dtype=xp.float64) for _ in range(3))
    bits = xp.ascontiguousarray(x, dtype=xp.float32).view(xp.int32)
    for start in range(0, len(bits), chunk):
        b = bits[start : start + chunk]
        e = (b >> 23) & 0xFF
        m = (b & 0x7FFFFF) | ((e != 0).astype(xp.int32) << 23)
        e = xp.maximum(e, 1)
        sign = b >> 31  # 0 or -1: (m ^ sign) - sign negates where the value is negative
        sums += xp.bincount(e, weights=(m ^ sign) - sign, minlength=_F32_BINS)
        m2 = m.astype(xp.int64) * m
        hi += xp.bincount(e, weights=m2 >> 24, minlength=_F32_BINS)
        lo += xp.bincount(e, weights=m2 & 0xFFFFFF, minlength=_F32_BINS)
    return _host(sums, xp), _host(hi, xp), _host(lo, xp)


def _f32_sums_host(x: np.ndarray) -> tuple[int, int]:
    """:func:`exact_sums_f32` on the host, in fixed point rather than by exponent bins (half the
    time: no scatter-adds). Per chunk, with ``top`` the largest biased exponent in it, a value whose
    exponent is at least ``top - 11`` is an integer ``y`` below 2**35 in units of 2**(top - 161):
    sums of ``y`` over 2**16 values stay below 2**53, exact in float64 in any order, and so do the
    sums of the two 35-bit halves of ``y * y`` (exact: under 2**70 with a 48-bit mantissa). The few
    smaller values (and zeros) go to :func:`_f32_bins`."""
    s1, s2 = 0, 0
    for start in range(0, len(x), _CHUNK):
        chunk = x[start : start + _CHUNK]
        x64 = chunk.astype(np.float64)
        ax = np.abs(x64)
        amax = float(ax.max()) if len(ax) else 0.0
        if amax == 0.0:
            continue
        top = max(int(np.frexp(amax)[1]) + 126, 1)  # the biased float32 exponent of the largest |value|
        small = ax < math.ldexp(1.0, top - 138)  # exponent below top - 11, or zero
        rest = chunk[small] if small.any() else chunk[:0]
        rest = rest[rest != 0]  # zeros add nothing either way: the binned path takes the others
        if len(rest):
            x64[small] = 0.0
            sums, hi, lo = _f32_bins(rest, np)
            s1 += _shifted(sums, lambda e: e - 150)
            s2 += _shifted(hi, lambda e: 2 * e - 300 + 24) + _shifted(lo, lambda e: 2 * e - 300)
        unit = top - 161
        y = x64 * math.ldexp(1.0, -unit)
        s1 += int(y.sum()) << (unit + SCALE_BITS)
        q = y * y
        q_hi = np.floor(q * 2.0**-35)
        q_lo = q - q_hi * 2.0**35
        s2 += ((int(q_hi.sum()) << 35) + int(q_lo.sum())) << (2 * unit + SCALE_BITS)
    return s1, s2


def _shifted(per_exponent: np.ndarray, scale) -> int:
    """sum over exponents e of per_exponent[e] * 2**scale(e), as an integer multiple of 2**-1127."""
    total = 0
    for e in np.flatnonzero(per_exponent):
        total += int(per_exponent[e]) << (scale(int(e)) + SCALE_BITS)
    return total
def decompose(x, xp=np):
    """Each finite float64 as (exponent bin, hi, lo) with ``x = hi * 2**(bin - OFFSET - 27) +
    lo * 2**(bin - OFFSET - 53)`` and hi, lo integers (as floats) below 2**27: x = m * 2**e with
    |m| in [0.5, 1); m * 2**27 = hi + frac, frac * 2**26 the low 26 mantissa bits. Sums of hi and
    of lo per bin are exact in any order while they stay below 2**53."""
    m, e = xp.frexp(x)
    t = m * float(1 << 27)
    hi = xp.trunc(t)
    lo = (t - hi) * float(1 << 26)
    return e.astype(xp.int32) + _EXP_OFFSET, hi, lo


def binned_value(bins: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Per-bin exact integer sums (int64 ``hi``, ``lo`` of :func:`decompose`) as float64 pieces whose
    sum is the exact total: four pieces per bin, each a product of an integer below 2**37 and a power
    of two (exact unless it under- or overflows). Summed in a fixed order they give a deterministic
    float of the exact sum (exact when it fits in 53 bits: counts, 0/1 labels)."""
    e = bins.astype(np.int64) - _EXP_OFFSET
    hi, lo = hi.astype(np.int64), lo.astype(np.int64)
    mask = np.int64((1 << 26) - 1)
    with np.errstate(over="ignore", under="ignore"):
        return np.stack([np.ldexp((hi >> 26).astype(np.float64), e - 1),
                         np.ldexp((hi & mask).astype(np.float64), e - 27),
                         np.ldexp((lo >> 26).astype(np.float64), e - 27),
                         np.ldexp((lo & mask).astype(np.float64), e - 53)], axis=1)


def _host(a, xp):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def to_fraction(s: int) -> Fraction:
    return Fraction(s, 1 << SCALE_BITS)


def hist_keys(x, bits: int, xp=np):
    """Order-preserving int64 keys of ``x`` truncated toward zero to ``bits`` mantissa bits."""
    raw = (xp.ascontiguousarray(x, dtype=xp.float64) + 0.0).view(xp.int64)  # -0.0 -> +0.0
    drop = 52 - bits
    trunc = (raw >> drop) << drop  # arithmetic shift keeps the sign bit; zeroes low mantissa bits
    # Flip negatives so that integer order equals float order.
    return xp.where(trunc < 0, ~(trunc & xp.int64(0x7FFFFFFFFFFFFFFF)), trunc)


def key_value(key: int) -> float:
    """The float a histogram key stands for (the value truncated toward zero)."""
    raw = (~key) | (1 << 63) if key < 0 else key
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


def histogram(x, bits: int, xp=np) -> tuple[np.ndarray, np.ndarray]:
    """A sparse histogram (sorted keys, counts) of finite ``x`` on the host."""
    keys, counts = xp.unique(hist_keys(x, bits, xp), return_counts=True)
    return _host(keys, xp).astype(np.int64), _host(counts, xp).astype(np.int64)


def coarse_histogram(x, bits: int, xp=np) -> tuple[np.ndarray, np.ndarray]:
    """:func:`histogram` for a few mantissa bits, by counting instead of sorting: a value's key is
    its top ``12 + bits`` bits (sign, exponent, mantissa), which index a table of ``2**(12 + bits)``
    counts. The same keys and counts as ``histogram(x, bits)``, in O(n).

    >>> x = np.array([0.1, -3.0, 2.5, 2.6, 1e300, -0.0])
    >>> all(np.array_equal(a, b) for a, b in zip(coarse_histogram(x, 3), histogram(x, 3)))
    True
    """
    if bits > 8:
        raise ValueError("coarse_histogram keeps at most 8 mantissa bits; use histogram()")
    host = _host_histogram(x, bits) if xp is np else None
    if host is not None:
        return host
    drop = 52 - bits
    raw = xp.ascontiguousarray(x, dtype=xp.float64).view(xp.uint64)
    counts = _host(xp.bincount((raw >> np.uint64(drop)).view(xp.int64), minlength=1 << (12 + bits)), xp)
    negative_zero = 1 << (11 + bits)  # -0.0 counts as +0.0
    counts[0], counts[negative_zero] = counts[0] + counts[negative_zero], 0
    index = np.flatnonzero(counts)
    trunc = (index.astype(np.uint64) << np.uint64(drop)).view(np.int64)
    keys = np.where(trunc < 0, ~(trunc & np.int64(0x7FFFFFFFFFFFFFFF)), trunc)
    order = np.argsort(keys, kind="stable")
    return keys[order].astype(np.int64), counts[index][order].astype(np.int64)


def _host_histogram(x: np.ndarray, bits: int):
    """:func:`coarse_histogram` without widening to float64 where the values allow it: float32 by
    its own top bits, integers of a narrow range by their counts; None for the general path."""
    if x.dtype == np.float32:
        return _f32_histogram(np.ascontiguousarray(x), bits)
    if x.dtype.kind in "iu" and len(x):
        return _int_histogram(x, bits)
    return None


def _f32_histogram(x: np.ndarray, bits: int):
    """Counted by a float32's top ``9 + bits`` bits (sign, exponent, mantissa): for normal values
    the same bins as their float64 values' keys. Zeros and subnormals (exponent field 0, whose
    float64 keys depend on more bits) and non-finite values take the general path."""
    drop = np.uint32(23 - bits)
    raw = x.view(np.uint32)
    counts = np.bincount(raw >> drop, minlength=1 << (9 + bits))
    exponent = (np.arange(len(counts)) >> bits) & 0xFF
    special = (exponent == 0) | (exponent == 0xFF)
    parts = []
    if counts[special].any():
        field = raw & np.uint32(0x7F800000)
        odd = x[(field == 0) | (field == np.uint32(0x7F800000))]
        parts.append(coarse_histogram(odd.astype(np.float64), bits))
        counts[special] = 0
    index = np.flatnonzero(counts)
    keys = hist_keys((index.astype(np.uint32) << drop).view(np.float32), bits)
    order = np.argsort(keys, kind="stable")
    parts.append((keys[order].astype(np.int64), counts[index][order].astype(np.int64)))
    return merge_histograms(parts) if len(parts) > 1 else parts[0]


def _int_histogram(x: np.ndarray, bits: int):
    """Integers counted value by value when their range is narrow (categorical ids, buckets), then
    the counts of the values sharing a key added up; None for a wide range."""
    lo, hi = int(x.min()), int(x.max())
    if hi - lo > min(2 * len(x) + (1 << 16), 1 << 22) or hi >= 1 << 63:
        return None
    counts = np.bincount(np.subtract(x, lo, dtype=np.int64), minlength=hi - lo + 1)
    present = np.flatnonzero(counts)
    keys = hist_keys(present + lo, bits)  # ascending values: ascending keys
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[starts].astype(np.int64), np.add.reduceat(counts[present], starts).astype(np.int64)


def merge_histograms(parts) -> tuple[np.ndarray, np.ndarray]:
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


def quantile(keys: np.ndarray, counts: np.ndarray, q) -> float:
    """The smallest histogram value v with at least ceil(q * n) values <= v (inverted CDF).
    ``q`` is a Fraction, or a float read as the decimal it prints as (0.1 means 1/10)."""
    n = int(counts.sum())
    if n == 0:
        return float("nan")
    q = q if isinstance(q, Fraction) else Fraction(repr(float(q)))
    rank = max(1, -(-q * n // 1))  # ceil(q * n), exact
    idx = int(np.searchsorted(np.cumsum(counts), int(rank), side="left"))
    return key_value(int(keys[min(idx, len(keys) - 1)]))
