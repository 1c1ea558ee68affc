"""The CPU engine's frame adapter for expressions (backends/evaluate.py): a pyarrow table's
columns as NumPy arrays in their canonical form, strings through pyarrow compute."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.backends import arrow as A
from shardsmith.backends.cpu.arrays import plain
from shardsmith.backends.evaluate import Val, evaluate, keep_mask, result
from shardsmith.kernels.xxhash64 import timestamp_micros

_CMP = {"eq": pc.equal, "ne": pc.not_equal, "lt": pc.less, "le": pc.less_equal, "gt": pc.greater,
        "ge": pc.greater_equal}


class ArrowColumns:
    """A pyarrow table seen by the evaluator."""

    xp = np

    def __init__(self, table: pa.Table):
        self.table, self.num_rows = table, table.num_rows

    def column(self, name: str) -> Val:
        return column_val(self.table[name])

    # strings
    def text_valid(self, arr):
        return np.asarray(arr.is_valid())

    def text_compare(self, fn: str, a, b):
        res = _CMP[fn](a, pa.scalar(b, type=a.type) if isinstance(b, str) else b)
        known = np.asarray(res.is_valid()) if res.null_count else None
        return np.asarray(res.fill_null(False)), known

    def text_is_in(self, arr, values):
        return np.asarray(pc.is_in(arr, value_set=pa.array(list(values), type=arr.type)).fill_null(False))

    def text_function(self, fn: str, arr, params) -> Val:
        kind, out = A.text_function(fn, arr, params)
        return _from_arrow(kind, out)

    def text_if_else(self, cond, known, a, b):
        value = np.broadcast_to(np.asarray(cond, dtype=bool), (self.num_rows,))
        return A.text_if_else(pa.array(value, mask=None if known is None else ~known), a, b)

    def text_coalesce(self, values):
        return A.text_coalesce(values, self.num_rows)


def column_val(column) -> Val:
    """A column in its canonical form: ints as int64, floats as float64, dates as int64 days,
    timestamps as int64 microseconds (kernels/xxhash64.timestamp_micros), strings as Arrow."""
    arr = plain(column)
    t = arr.type
    valid = np.asarray(arr.is_valid()) if arr.null_count else None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return Val("string", arr.cast(pa.string()) if pa.types.is_large_string(t) else arr, valid)
    if pa.types.is_boolean(t):
        return Val("bool", np.asarray(arr.fill_null(False)), valid)
    if pa.types.is_date32(t) or pa.types.is_date64(t):
        days = arr.cast(pa.date32()).cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        return Val("date", days.astype(np.int64), valid)
    if pa.types.is_timestamp(t):
        raw = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return Val("timestamp", timestamp_micros(raw, t.unit), valid)
    values = arr.fill_null(0).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t):
        return Val("float", values.astype(np.float64, copy=False), valid)
    return Val("int", values.view(np.int64) if values.dtype == np.uint64 else values.astype(np.int64), valid)


def _from_arrow(kind: str, arr: pa.Array) -> Val:
    if kind == "string":
        return Val(kind, arr)
    valid = np.asarray(arr.is_valid()) if arr.null_count else None
    values = arr.fill_null(False if kind == "bool" else 0).to_numpy(zero_copy_only=False)
    return Val(kind, values, valid)


def filter_mask(table: pa.Table, node) -> np.ndarray:
    """The rows of ``table`` that the predicate ``node`` keeps."""
    return keep_mask(node, ArrowColumns(table))


def derive_column(table: pa.Table, node, dtype: str) -> pa.Array:
    """The column an expression derives, as ``dtype`` (see ir/expr.py for the rules)."""
    cols = ArrowColumns(table)
    v = evaluate(node, cols)
    if dtype in ("string", "binary"):
        return A.text_value(v.data if v.kind == "string" else None, table.num_rows).cast(pa.string())
    data, ok = result(v, dtype, cols)
    mask = None if bool(ok.all()) else ~ok
    if dtype == "date":
        return pa.array(data.astype(np.int32), mask=mask, type=pa.int32()).view(pa.date32())
    if dtype == "timestamp":
        return pa.array(data, mask=mask, type=pa.int64()).view(pa.timestamp("us"))
    return pa.array(data, mask=mask)

