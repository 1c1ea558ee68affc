"""Exact statistics: sums equal the rational sum, quantiles equal a sort-based reference."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from shardsmith.kernels import exact
from shardsmith.ops import stats as S


def test_exact_sum_is_the_rational_sum_in_any_order():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(50_000) * np.exp(rng.uniform(-300, 300, 50_000))
    x = np.concatenate([x, [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308]])
    s = exact.exact_sum(x)
    assert exact.to_fraction(s) == sum(Fraction(v) for v in x)
    perm = rng.permutation(len(x))
    parts = np.array_split(x[perm], 7)
    assert sum(exact.exact_sum(p) for p in parts) == s


def test_float32_and_integer_moments_are_those_of_their_float64_values():
    """The float32 path (mantissas by exponent) and the integer path (int64 sums) give the very
    integers the float64 path does: every float32 exponent, subnormals, signs, zeros; integers
    small enough for exact int64 sums, and larger ones, which go the float64 way."""
    rng = np.random.default_rng(6)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    f32 = bits.view(np.float32)
    f32 = np.concatenate([f32[np.isfinite(f32)], np.array([0.0, -0.0, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38,
                                                           1.0, -1.0], np.float32)])
    reference = lambda x: (len(x), exact.exact_sum(x.astype(np.float64)),  # noqa: E731
                           exact.exact_sum(x.astype(np.float64) ** 2))
    assert S.moments_partial(f32) == reference(f32)
    assert S.moments_partial(f32[:0]) == reference(f32[:0])
    for x in (rng.integers(-128, 128, 5000).astype(np.int8), rng.integers(0, 2**26, 5000).astype(np.uint32),
              rng.integers(-2**40, 2**40, 5000), np.array([2**62, -2**62, 3]), np.array([True, False, True])):
        assert S.moments_partial(x) == reference(x)


def test_float32_sums_in_fixed_point_equal_the_exponent_bins():
    """The host's fixed-point float32 sums (kernels/exact.py ``_f32_sums_host``) against the
    exponent-bin sums the GPU runs, over data that is all inside a chunk's window (z-scores), data
    with a few tiny values below it, subnormals only, and chunk boundaries."""
    rng = np.random.default_rng(8)
    z = rng.standard_normal(150_001).astype(np.float32)
    tiny = z.copy()
    tiny[::997] *= np.float32(1e-30)
    cases = [z, tiny, np.array([1e-45, -3e-44, 1e-40, 0.0], np.float32), z[:65_536], z[:65_537], -z[:3] * 1e30]

    def by_bins(x):
        sums, hi, lo = exact._f32_bins(x, np)
        return (exact._shifted(sums, lambda e: e - 150),
                exact._shifted(hi, lambda e: 2 * e - 300 + 24) + exact._shifted(lo, lambda e: 2 * e - 300))

    for x in cases:
        assert exact.exact_sums_f32(x) == by_bins(x)


def test_coarse_histogram_of_float32_and_integers_is_that_of_their_float64_values():
    """Float32 counted by its own bits (zeros and subnormals included) and narrow-range integers
    counted by value give the float64 path's keys and counts; wide integers take that path."""
    rng = np.random.default_rng(9)
    bits = rng.integers(0, 2**32, 50_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    floats = [rng.standard_normal(20_000).astype(np.float32), bits[np.isfinite(bits)],
              np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -1.5, 1.5], np.float32)]
    ints = [rng.integers(0, 30_000, 20_000).astype(np.int32), rng.integers(-5, 5, 99).astype(np.int8),
            np.arange(-70_000, 70_000), np.array([2**62, -2**62, 3]), np.array([2**64 - 1, 5], np.uint64),
            np.array([7], np.uint8)]
    for x in floats + ints:
        for b in (0, 3, 8):
            keys, counts = exact.coarse_histogram(x, b)
            ref_keys, ref_counts = exact.histogram(x.astype(np.float64), b)
            assert keys.dtype == counts.dtype == np.int64
            assert np.array_equal(keys, ref_keys) and np.array_equal(counts, ref_counts)


def test_moments_do_not_depend_on_partitioning():
    rng = np.random.default_rng(4)
    x = rng.lognormal(2, 3, 100_001).astype(np.float32).astype(np.float64)
    whole = S.Moments("x").finalize(S.moments_partial(x))
    for k in (2, 3, 17):
        parts = [S.moments_partial(p) for p in np.array_split(x, k)]
        assert S.Moments("x").finalize(S.Moments("x").merge(parts)) == whole
    assert whole["mean"] == pytest.approx(float(np.mean(x)), rel=1e-12)
    assert whole["std"] == pytest.approx(float(np.std(x)), rel=1e-9)


@pytest.mark.parametrize("bits", [3, 10, 52])
def test_quantiles_match_sorted_reference(bits):
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.integers(-50, 2000, 5000).astype(np.float64), rng.standard_normal(3000) * 1e3])
    parts = [exact.histogram(p, bits) for p in np.array_split(x, 4)]
    hist = S.Quantiles("x", bits).finalize(S.Quantiles("x", bits).merge(parts))
    xs = np.sort(x)
    for q in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
        k = max(1, int(np.ceil(q * len(xs))))
        truth = xs[k - 1]  # inverted CDF: the smallest v with at least ceil(q n) values <= v
        got = hist.quantile(q)
        # Truncated toward zero to `bits` mantissa bits: never further than 2**-bits relative.
        assert abs(got) <= abs(truth)
        assert abs(truth - got) <= abs(truth) * 2.0**-bits
        if bits == 52:
            assert got == truth


def test_integers_below_2_to_bits_are_exact():
    x = np.array([1, 2, 2, 3, 7, 1000, 2047], dtype=np.float64)
    hist = S.Histogram(*exact.histogram(x, 10))
    assert hist.quantile(0.5) == 3.0
    assert hist.quantile(1.0) == 2047.0

