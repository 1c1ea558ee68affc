"""Statistics that fitted ops request: mergeable partial aggregates with an exact merge.

Each statistic is computed per partition by a backend (``Backend.partial(stat, values)``), merged
in partition order by :meth:`merge`, and turned into its result by :meth:`finalize`. Every merge is
exact (integer sums, integer counts, min/max), so the fitted state does not depend on the partition
sizes, the number of workers or the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pyarrow as pa

from shardsmith.kernels import exact


@dataclass(frozen=True)
class Stat:
    """A statistic of one column as it is seen at a step's input."""

    col: str

    def merge(self, parts: list):
        raise NotImplementedError(type(self).__name__)

    def finalize(self, merged):
        raise NotImplementedError(type(self).__name__)


@dataclass(frozen=True)
class Moments(Stat):
    """count, mean and population std of the non-missing values (exact sums)."""

    def merge(self, parts):
        return tuple(sum(p[i] for p in parts) for i in range(3)) if parts else (0, 0, 0)

    def finalize(self, merged):
        n, s1, s2 = merged
        if n == 0:
            return {"count": 0, "mean": 0.0, "std": 0.0}
        mean = exact.to_fraction(s1) / n
        if isinstance(s2, float):  # a square overflowed float64: the spread is unbounded
            return {"count": n, "mean": float(mean), "std": math.inf}
        var = exact.to_fraction(s2) / n - mean * mean
        return {"count": n, "mean": float(mean), "std": math.sqrt(max(float(var), 0.0))}


@dataclass(frozen=True)
class MinMax(Stat):
    """count, min and max of the non-missing values."""

    def merge(self, parts):
        parts = [p for p in parts if p[0]]
        if not parts:
            return (0, math.nan, math.nan)
        return (sum(p[0] for p in parts), min(p[1] for p in parts), max(p[2] for p in parts))

    def finalize(self, merged):
        n, lo, hi = merged
        return {"count": n, "min": lo, "max": hi}


@dataclass(frozen=True)
class Quantiles(Stat):
    """A mergeable histogram with ``bits`` mantissa bits, answering any quantile."""

    bits: int = 10

    def merge(self, parts):
        return exact.merge_histograms(parts)

    def finalize(self, merged):
        return Histogram(*merged)


@dataclass(frozen=True)
class Histogram:
    keys: np.ndarray
    counts: np.ndarray

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        return exact.quantile(self.keys, self.counts, q)


@dataclass(frozen=True)
class ValueCounts(Stat):
    """Each distinct non-null value with its count, and the null count.

    A partial is ``(values, counts, nulls)`` with host arrays (NumPy, or a pyarrow array for
    strings); merging sums the counts of equal values.
    """

    def merge(self, parts):
        nulls = sum(p[2] for p in parts)
        parts = [p for p in parts if len(p[0])]
        if not parts:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), nulls)
        if all(isinstance(p[0], np.ndarray) for p in parts):
            return (*_sum_by_value(np.concatenate([p[0] for p in parts]),
                                   np.concatenate([np.asarray(p[1], np.int64) for p in parts])), nulls)
        table = pa.table({"v": pa.concat_arrays([pa.array(p[0]) for p in parts]),
                          "n": pa.array(np.concatenate([np.asarray(p[1], np.int64) for p in parts]))})
        merged = table.group_by("v").aggregate([("n", "sum")])
        return (merged["v"].combine_chunks(), merged["n_sum"].to_numpy(), nulls)

    def finalize(self, merged):
        values, counts, nulls = merged
        return (values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values), counts, nulls)


def _sum_by_value(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (sorted) and their summed counts. Partials come sorted (``unique``
    sorts), so a stable sort of their concatenation only merges runs: linear, about 3x faster
    than ``unique`` of it (2 x 160,000 values, 2026-11)."""
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    return values[starts], np.add.reduceat(counts, starts) if len(starts) else counts


def moments_partial(x, xp=np) -> tuple[int, int, int]:
    """The partial for :class:`Moments` over finite values ``x``: float64; float32 (whose float64
    squares are exact) and integers give the integers their float64 values would, for less work."""
    if x.dtype == np.float32:
        return (int(len(x)), *exact.exact_sums_f32(x, xp))
    if x.dtype.kind in "iub":  # integers: by int64 sums where exact, else as float64 values
        sums = exact.exact_sums_int(x, xp)
        if sums is not None:
            return (int(len(x)), *sums)
        x = x.astype(xp.float64)
    with np.errstate(over="ignore"):  # squares beyond float64: the sum of squares is inf, said below
        sq = x * x
    s2 = exact.exact_sum(sq, xp) if bool(xp.isfinite(sq).all()) else math.inf
    return (int(len(x)), exact.exact_sum(x, xp), s2)


def minmax_partial(x, xp=np) -> tuple[int, float, float]:
    if len(x) == 0:
        return (0, math.nan, math.nan)
    return (int(len(x)), float(x.min()), float(x.max()))


def mean_from(merged) -> Fraction:
    n, s1, _ = merged
    return exact.to_fraction(s1) / n if n else Fraction(0)
