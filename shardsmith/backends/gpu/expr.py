"""The GPU engine's frame adapter for expressions (backends/evaluate.py, which holds the meaning and
the arithmetic for both engines): a cuDF frame's columns as CuPy arrays in their canonical form
(ints as int64, floats as float64, dates as int64 days, timestamps as int64 microseconds),
string comparisons and ``in`` on the device through cuDF.

The string functions (``lower``, ``upper``, ``length``, ``substr``, ``starts_with``, ``contains``)
and string-valued ``if_else`` / ``coalesce`` run on the host with Arrow, exactly as on the CPU engine,
so that one library's Unicode rules define them (``shardsmith plan`` says so for a step that uses
them).
"""

from __future__ import annotations

import operator

import numpy as np
import pyarrow as pa

from shardsmith.backends import arrow as A
from shardsmith.backends.evaluate import Val, evaluate, keep_mask, result
from shardsmith.kernels.xxhash64 import timestamp_micros

_CMP = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
        "ge": operator.ge}
TIMESTAMP_UNITS = {"TIMESTAMP_SECONDS": "s", "TIMESTAMP_MILLISECONDS": "ms", "TIMESTAMP_MICROSECONDS": "us",
                   "TIMESTAMP_NANOSECONDS": "ns"}  # cuDF's type ids of timestamps by their unit


class CudfColumns:
    """A cuDF DataFrame seen by the evaluator. ``dates``: the columns that hold dates (int32 days on
    the device, where cuDF has no date type)."""

    def __init__(self, frame, dates=()):
        import cupy  # lazy: this module is imported without a GPU (plans, tests of the host side)

        from shardsmith.backends.gpu import columns as C  # lazy: columns imports cuDF
        from shardsmith.backends.gpu import transfer  # lazy: as above

        self.frame, self.xp, self._C, self._transfer = frame, cupy, C, transfer
        self.dates = set(dates)
        self.num_rows = len(frame)

    def column(self, name: str) -> Val:
        return self.series_val(self.frame[name], name in self.dates)

    def series_val(self, s, is_date: bool = False) -> Val:
        C = self._C
        kind = C.kind(s)
        if kind == "string":
            return Val("string", s, None if s.null_count == 0 else C.validity(s))
        values, valid = C.values_and_validity(s)
        tid = C.plc_column(s).type().id()
        if kind == "bool":
            return Val("bool", values.astype(bool), valid)
        if tid.name in TIMESTAMP_UNITS:
            micros = timestamp_micros(values.astype(np.int64), TIMESTAMP_UNITS[tid.name], self.xp)
            return Val("timestamp", micros, valid)
        if tid.name == "TIMESTAMP_DAYS" or is_date:
            return Val("date", values.astype(np.int64), valid)
        if kind == "float":
            return Val("float", values.astype(np.float64), valid)
        return Val("int", values.view(np.int64) if values.dtype == np.uint64 else values.astype(np.int64), valid)

    # strings: comparisons and `in` on the device
    def text_valid(self, s):
        return self._C.validity(s)

    def text_compare(self, fn: str, a, b):
        value, known = self._C.bool_and_validity(_CMP[fn](a, b))
        for side in (a, b):  # a null operand makes the comparison null, whatever cuDF says
            if not isinstance(side, str) and side.null_count:
                v = self._C.validity(side)
                known = v if known is None else (known & v)
        return value, known

    def text_is_in(self, s, values):
        return self._C.bool_and_validity(s.isin(list(values)))[0]

    # strings: functions on the host, as on the CPU engine
    def _host(self, s) -> pa.Array:
        arr = s.to_arrow()
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr

    def _device(self, arr: pa.Array):
        return self._transfer.array_to_series(arr)

    def text_function(self, fn: str, s, params) -> Val:
        kind, out = A.text_function(fn, self._host(s), params)
        if kind == "string":
            return Val(kind, self._device(out))
        return self.series_val(self._device(out))

    def text_if_else(self, cond, known, a, b):
        value = np.broadcast_to(np.asarray(self.xp.asnumpy(cond) if np.ndim(cond) else cond, dtype=bool),
                                (self.num_rows,))
        mask = None if known is None else ~self.xp.asnumpy(known)
        out = A.text_if_else(pa.array(value, mask=mask), self._text(a), self._text(b))
        return self._device(out)

    def text_coalesce(self, values):
        return self._device(A.text_coalesce([self._text(v) for v in values], self.num_rows))

    def _text(self, v):
        return v if v is None or isinstance(v, str) else self._host(v)


def filter_mask(frame, node, dates=()):
    """The rows of ``frame`` that the predicate keeps (a CuPy bool array)."""
    return keep_mask(node, CudfColumns(frame, dates))


def derive_series(frame, node, dtype: str, dates=()):
    """The column an expression derives, as ``dtype`` (dates as int32 days, the device's form)."""
    cols = CudfColumns(frame, dates)
    v = evaluate(node, cols)
    C = cols._C
    if dtype in ("string", "binary"):
        if v.kind == "string" and not isinstance(v.data, str):
            return v.data
        return cols._device(A.text_value(None if v.kind == "null" else v.data, cols.num_rows))
    data, ok = result(v, dtype, cols)
    n = cols.num_rows
    nulls = n - int(ok.sum())
    tid = {"timestamp": C.T.TIMESTAMP_MICROSECONDS, "bool": C.T.BOOL8}.get(dtype)
    return C.from_device(data, C.pack_bits(ok) if nulls else None, nulls, type_id=tid)
