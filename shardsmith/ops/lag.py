"""lag: values of the previous rows of the same key in time order, and differences to them::

    {op: lag, keys: [user_id], order_by: ts, cols: [price, ts], shifts: [1, 2], output: diff}

Meaning: the rows that reach this step (every split: a lag looks back in time, it learns nothing),
grouped by ``keys`` and ordered by ``order_by`` (ties by input order: file, then row); for each row,
column of ``cols`` and shift k, the value k rows earlier in its key's order (``<col>_lag<k>``,
``output: value``), or the row's value minus that one (``<col>_diff<k>``, ``output: diff``, the
default), or both. Numbers subtract as in expressions (ints to int64, wrapping; floats in float64),
a date's difference is in days (int64), a timestamp's in seconds (float64). A row with fewer than k
earlier rows of its key, a null key or a null (or NaN) ``order_by`` gets null; such rows are not
earlier rows of any other either. Keys match as ``join`` matches them (ops/joins.py).

How it runs, whatever the input order and partitioning: a fit pass collects ``keys``, ``order_by``
and ``cols`` of every row with the row's file and number (ops/stats.py ``RowsSnapshot``); the
driver sorts them and computes every row's lags; the transform looks each row up by (file, row).
So the state holds one value per row and output, built on the driver: a lag over a very large
input needs the driver's memory for those columns (about 30 bytes per row and output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.errors import ConfigError
from shardsmith.ir import FILE_COL, ROW_COL, Column, Schema
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.ir.expr_types import column_kind
from shardsmith.kernels.xxhash64 import timestamp_micros
from shardsmith.ops.base import register_op
from shardsmith.ops.joins import canonical_key
from shardsmith.ops.keyed import KeyedOp
from shardsmith.ops.stats import RowsSnapshot, dense_groups

OUTPUTS = ("diff", "value", "both")
ROW_BITS = 40  # a state row's lookup key: file index << ROW_BITS | row number


@register_op
@dataclass(frozen=True)
class Lag(KeyedOp):
    """Values of, or differences to, the previous rows of each key in ``order_by`` order."""

    op_name = "lag"
    order_by: str = ""
    shifts: tuple[int, ...] = (1,)
    output: str = "diff"

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        kind = column_kind(schema.require(self.order_by, f"{key}.order_by").dtype) if self.order_by else None
        if kind not in ("int", "float", "date", "timestamp"):
            raise ConfigError(f"expected a timestamp, date or number column to order by, got "
                              f"{schema[self.order_by].dtype if self.order_by else 'none'}", f"{key}.order_by")
        if not self.cols:
            raise ConfigError("expected the columns to look back at", f"{key}.cols")
        if self.output not in OUTPUTS:
            raise ConfigError(f"expected one of {', '.join(OUTPUTS)}, got {self.output!r}", f"{key}.output")
        if not self.shifts or any(k < 1 for k in self.shifts) or len(set(self.shifts)) != len(self.shifts):
            raise ConfigError(f"expected distinct shifts of 1 or more, got {list(self.shifts)}", f"{key}.shifts")
        for c in self.cols:
            if self.output != "value" and column_kind(schema[c].dtype) not in ("int", "float", "date", "timestamp"):
                raise ConfigError(f"column '{c}' is {schema[c].dtype}: differences need numbers, dates or timestamps "
                                  "(output: value takes any column)", f"{key}.cols")
        for name in self.outputs():
            if name in schema:
                raise ConfigError(f"column '{name}' already exists", f"{key}.cols")

    def outputs(self) -> tuple[str, ...]:
        out = []
        for c in self.cols:
            for k in self.shifts:
                if self.output in ("value", "both"):
                    out.append(f"{c}_lag{k}")
                if self.output in ("diff", "both"):
                    out.append(f"{c}_diff{k}")
        return tuple(out)

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.keys, self.order_by, *self.cols)))

    def depends_on(self) -> dict[str, tuple]:
        """Each output from the keys and order that choose the earlier row, and its own column.

        >>> Lag(keys=("u",), order_by="ts", cols=("p",), shifts=(1,)).depends_on()
        {'p_diff1': ('u', 'ts', 'p')}
        """
        kinds = [kind for kind, output in (("lag", "value"), ("diff", "diff")) if self.output in (output, "both")]
        out = {}
        for c in self.cols:
            deps = tuple(dict.fromkeys((*self.keys, self.order_by, c)))
            out.update({f"{c}_{kind}{k}": deps for k in self.shifts for kind in kinds})
        return out

    def infer(self, schema: Schema) -> Schema:
        new = {}
        for c in self.cols:
            dtype = schema[c].dtype
            for k in self.shifts:
                if self.output in ("value", "both"):
                    new[f"{c}_lag{k}"] = Column(f"{c}_lag{k}", dtype, schema[c].role)
                if self.output in ("diff", "both"):
                    d = diff_dtype(dtype)
                    new[f"{c}_diff{k}"] = Column(f"{c}_diff{k}", d, "continuous")
        return schema.replace_columns(new)

    def statistics(self, schema: Schema) -> tuple:
        cols = self.reads()
        return (RowsSnapshot(self.order_by, cols=cols, dtypes=tuple(schema[c].dtype for c in cols)),)

    def fit(self, results: dict) -> dict:
        """``table``: per row (``__at``: file index and row number, sorted) its lag outputs."""
        ((stat, rows),) = results.items()
        if rows is None:  # no row reached the step: an empty table of the right types
            rows = pa.table({c: pa.array([], _arrow(d)) for c, d in zip(stat.cols, stat.dtypes)}
                            | {FILE_COL: pa.array([], pa.int32()), ROW_COL: pa.array([], pa.int64())})
        return {"table": lag_table(self, rows)}


def diff_dtype(dtype: str) -> str:
    kind = column_kind(dtype)
    return "float64" if kind in ("float", "timestamp") else "int64"


def _arrow(dtype: str) -> pa.DataType:
    return pa.timestamp("us") if dtype == "timestamp" else ARROW_TYPES[dtype]


def lag_table(op: Lag, rows: pa.Table) -> pa.Table:
    """Every row's lag outputs with its ``__at`` (file index << 40 | row number), from the collected
    rows: sorted by key, order, file and row (NumPy), lagged within each key, scattered back."""
    n = rows.num_rows
    order = _order_values(rows[op.order_by])
    valid = np.asarray(order.is_valid()) & ~np.isnan(order.fill_null(0).to_numpy(zero_copy_only=False).astype(
        np.float64))
    keys = [canonical_key(rows[k]) for k in op.keys]
    for k in keys:
        if k.null_count:
            valid &= np.asarray(k.is_valid())
    at = (rows[FILE_COL].to_numpy().astype(np.int64) << ROW_BITS) | rows[ROW_COL].to_numpy().astype(np.int64)
    if n > 1 and not bool(np.all(at[1:] > at[:-1])):  # rows come in input order; if not, put them so
        rows = rows.take(np.argsort(at, kind="stable"))
        return lag_table(op, rows)
    idx = np.flatnonzero(valid)
    group, _ = dense_groups([k.take(pa.array(idx)) for k in keys])
    ordered = order.take(pa.array(idx)).to_numpy(zero_copy_only=False)
    sort = group_order(group, ordered)  # stable: ties keep the input order (file, then row)
    src = idx[sort]  # the valid rows in sequence order
    starts = np.ones(len(src), dtype=bool)
    starts[1:] = group[sort][1:] != group[sort][:-1]
    position = np.arange(len(src)) - np.maximum.accumulate(np.where(starts, np.arange(len(src)), 0))
    out = {"__at": pa.array(at, pa.int64())}
    for c in op.cols:
        values = rows[c].combine_chunks()
        for k in op.shifts:
            ok = position >= k
            earlier = np.full(n, -1, dtype=np.int64)
            earlier[src[ok]] = src[np.flatnonzero(ok) - k]  # each row's k-th predecessor, or -1
            has = earlier >= 0
            prev = values.take(pa.array(np.where(has, earlier, 0), mask=~has if not has.all() else None)) \
                if n else values
            if op.output in ("value", "both"):
                out[f"{c}_lag{k}"] = prev
            if op.output in ("diff", "both"):
                out[f"{c}_diff{k}"] = difference(values, prev)
    return pa.table(out)


def group_order(group: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """``np.lexsort((ordered, group))``: the stable order by group, then by value. Integer values
    whose range times the number of groups fits 63 bits sort as one int64 key
    (``group * span + value - min``) by one stable argsort, 2-3x faster than lexsort's two passes
    (1,000,000 rows of 20,000 users' microsecond times: 0.18 against 0.52 s); others by lexsort.

    >>> group_order(np.array([1, 0, 1, 0]), np.array([5, 7, 5, -2])).tolist()
    [3, 1, 0, 2]
    """
    if len(group) and ordered.dtype.kind in "iu" and group.dtype.kind in "iu":
        lo, hi = int(ordered.min()), int(ordered.max())
        groups = int(group.max()) + 1
        if int(group.min()) >= 0 and groups * (hi - lo + 1) < 1 << 63:
            key = group.astype(np.int64) * np.int64(hi - lo + 1) + (ordered - lo).astype(np.int64)
            return np.argsort(key, kind="stable")
    return np.lexsort((ordered, group))


def _order_values(column) -> pa.Array:
    """``order_by`` in a form that sorts by time or value: int64 (ints, days, microseconds) or float64."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_floating(arr.type):
        return arr.cast(pa.float64())
    return canonical_key(arr)


def difference(a: pa.Array, b: pa.Array) -> pa.Array:
    """``a - b`` by the rules of the module docstring; null where either is null."""
    t = a.type
    mask = np.asarray(pc.or_(pc.is_null(a), pc.is_null(b)))
    if pa.types.is_floating(t):
        x = a.cast(pa.float64()).fill_null(0).to_numpy() - b.cast(pa.float64()).fill_null(0).to_numpy()
        return pa.array(x, mask=mask)
    if pa.types.is_timestamp(t):
        ua = timestamp_micros(a.cast(pa.int64()).fill_null(0).to_numpy(), t.unit)
        ub = timestamp_micros(b.cast(pa.int64()).fill_null(0).to_numpy(), t.unit)
        with np.errstate(over="ignore"):
            return pa.array((ua - ub) / 1e6, mask=mask)
    ia, ib = canonical_key(a).fill_null(0).to_numpy(), canonical_key(b).fill_null(0).to_numpy()
    with np.errstate(over="ignore"):
        return pa.array(ia.astype(np.int64) - ib.astype(np.int64), mask=mask)
