"""Summary statistics of the output columns, computed per shard as it is written and merged in
shard order. Shards do not depend on partitioning, so neither do these figures."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from shardsmith.compiler.ir import Schema, is_numeric

MOMENT_ROLES = ("continuous", "label", "weight", "other")


def shard_summary(table: pa.Table, schema: Schema) -> dict:
    """Per column: null count; for numbers count, min, max; for non-categorical numbers the mean
    and the sum of squared deviations (Chan et al.'s mergeable form)."""
    out = {}
    for col in schema.columns:
        column = table[col.name]
        entry: dict = {"nulls": int(column.null_count)}
        if is_numeric(col.dtype):
            x = column.to_numpy(zero_copy_only=False) if column.null_count == 0 else \
                column.drop_null().to_numpy(zero_copy_only=False)
            x = x.astype(np.float64, copy=False)
            x = x[np.isfinite(x)] if x.dtype.kind == "f" else x
            entry["count"] = int(len(x))
            entry["min"] = float(x.min()) if len(x) else None
            entry["max"] = float(x.max()) if len(x) else None
            if col.role in MOMENT_ROLES and len(x):
                mean = float(x.mean())
                entry["mean"], entry["m2"] = mean, float(np.square(x - mean).sum())
        out[col.name] = entry
    return out


def merge_summaries(parts: list[dict], schema: Schema) -> dict:
    """Merge shard summaries in the given (shard) order; the result has mean and std."""
    out = {}
    for col in schema.columns:
        entries = [p[col.name] for p in parts]
        merged: dict = {"nulls": sum(e["nulls"] for e in entries)}
        counted = [e for e in entries if e.get("count")]
        if entries and "count" in entries[0]:
            merged["count"] = sum(e["count"] for e in entries)
            merged["min"] = min((e["min"] for e in counted), default=None)
            merged["max"] = max((e["max"] for e in counted), default=None)
        moments = [e for e in counted if "mean" in e]
        if moments:
            n, mean, m2 = 0, 0.0, 0.0
            for e in moments:
                nb = e["count"]
                delta = e["mean"] - mean
                total = n + nb
                mean += delta * nb / total
                m2 += e["m2"] + delta * delta * n * nb / total
                n = total
            merged["mean"], merged["std"] = mean, math.sqrt(m2 / n)
        out[col.name] = merged
    return out
