"""Summary statistics of the output columns, computed per shard as it is written and merged in
shard order: null counts; for numbers the count, min and max of the finite values, (except for
categorical ids) the exact moments of ops/stats.py, and a histogram, merged as every fitted
statistic is, so that the figures depend neither on partitioning nor on the engine.

The histogram counts the finite values by key: a value truncated toward zero to HIST_BITS mantissa
bits (kernels/exact.py), so 8 bins per power of two, every integer below 16 a bin of its own, and
the same bins in every dataset: two datasets' histograms compare bin by bin (``shardsmith drift``).
Values left out of these for being NaN or +-inf (possible only in columns that no elementwise op
wrote: ops write them as null) are counted as ``nonfinite``, present when there are any.
"""

from __future__ import annotations

import numpy as np

from shardsmith.ir import Schema, is_numeric
from shardsmith.kernels.exact import coarse_histogram, merge_histograms
from shardsmith.ops.stats import MinMax, Moments, minmax_partial, moments_partial

MOMENT_ROLES = ("continuous", "label", "weight", "other")
HIST_BITS = 3


def shard_summary(schema: Schema, nulls_of, finite_of, xp=np, rows: int | None = None) -> dict:
    """Per column: null count; for numbers count, min, max; for non-categorical numbers the
    exact moment sums (count, sum, sum of squares). ``nulls_of(name)`` gives a column's null
    count and ``finite_of(name)`` its non-missing, finite values as float64 (an array of ``xp``:
    the engine computes them where the shard is, on the device for the GPU engine); with the
    shard's ``rows``, the values left out for being NaN or +-inf are counted (``nonfinite``)."""
    out = {}
    for col in schema.columns:
        entry: dict = {"nulls": int(nulls_of(col.name))}
        if is_numeric(col.dtype):
            x = finite_of(col.name)
            n, lo, hi = minmax_partial(x, xp)
            entry.update(count=n, min=lo if n else None, max=hi if n else None)
            if rows is not None and rows - entry["nulls"] > n:
                entry["nonfinite"] = rows - entry["nulls"] - n
            if col.role in MOMENT_ROLES and n:
                entry["moments"] = list(moments_partial(x, xp))
            keys, counts = coarse_histogram(x, HIST_BITS, xp)
            entry["hist"] = [keys.tolist(), counts.tolist()]
        out[col.name] = entry
    return out


def merge_summaries(parts: list[dict], schema: Schema) -> dict:
    """Merge shard summaries in the given (shard) order; the result has mean and std."""
    out = {}
    for col in schema.columns:
        entries = [p[col.name] for p in parts]
        merged: dict = {"nulls": sum(e["nulls"] for e in entries)}
        if any(e.get("nonfinite") for e in entries):
            merged["nonfinite"] = sum(e.get("nonfinite", 0) for e in entries)
        if entries and "count" in entries[0]:
            counted = [(e["count"], e["min"], e["max"]) for e in entries if e["count"]]
            n, lo, hi = MinMax(col.name).merge(counted)
            merged.update(count=n, min=lo if n else None, max=hi if n else None)
        moments = [tuple(e["moments"]) for e in entries if "moments" in e]
        if moments:
            result = Moments(col.name).finalize(Moments(col.name).merge(moments))
            merged["mean"], merged["std"] = result["mean"], result["std"]
        hists = [tuple(np.asarray(a, np.int64) for a in e["hist"]) for e in entries if "hist" in e]
        if hists:
            keys, counts = merge_histograms(hists)
            merged["hist"] = {"bits": HIST_BITS, "keys": keys.tolist(), "counts": counts.tolist()}
        out[col.name] = merged
    return out
