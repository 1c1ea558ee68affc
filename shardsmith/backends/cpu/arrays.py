"""Arrow columns as the CPU backend computes on them: plain layouts (no dictionaries or views),
float64 views with NaN for missing, integer words for hashing, and back to Arrow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardsmith.backends.arrow import one_array
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels.xxhash64 import timestamp_micros


def is_numpy_friendly(t: pa.DataType) -> bool:
    """Integer and boolean types, whose values NumPy holds exactly and hashes fast."""
    return pa.types.is_integer(t) or pa.types.is_boolean(t)


def normalize_types(table: pa.Table) -> pa.Table:
    """Dictionary and view columns become plain ones: one physical layout per dtype."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table[f.name].cast(f.type.value_type))
        elif f.type == pa.string_view() or f.type == pa.large_string():
            table = table.set_column(i, f.name, table[f.name].cast(pa.string()))
    return table


def plain(column) -> pa.Array:
    arr = one_array(column)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def int_values(arr: pa.Array) -> np.ndarray:
    """The integers a column hashes as: dates as days, timestamps as canonical microseconds
    (kernels/xxhash64.py), whatever unit they are stored in."""
    t = arr.type
    if pa.types.is_boolean(t):
        return arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_timestamp(t):
        return timestamp_micros(arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), t.unit)
    if pa.types.is_date(t):
        arr = arr.cast(pa.date32()).cast(pa.int32())
    return (arr.fill_null(0) if arr.null_count else arr).to_numpy(zero_copy_only=False)


def float_values(column) -> np.ndarray:
    """float64 values with NaN for null (and NaN kept): the elementwise view of a column."""
    arr = plain(column)
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int8())
    if arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    # Unsafe: integers beyond 2**53 round to nearest, as NumPy's astype does without nulls
    # (Arrow's safe cast refuses them).
    return arr.cast(pa.float64(), safe=False).fill_null(np.nan).to_numpy(zero_copy_only=False)


def finite_values(column) -> np.ndarray:
    """The finite values: float32 and integers where the column is (statistics take them as they
    are, giving what their float64 values would), else float64."""
    arr = plain(column)
    if pa.types.is_integer(arr.type):
        return (arr.drop_null() if arr.null_count else arr).to_numpy()
    if arr.type == pa.float32():
        x = arr.to_numpy(zero_copy_only=False) if arr.null_count == 0 else arr.drop_null().to_numpy()
    else:
        x = float_values(arr)
    finite = np.isfinite(x)
    return x if finite.all() else x[finite]


def from_float(values: np.ndarray, dtype: str) -> pa.Array:
    """An Arrow array of ``dtype`` from float64 values (or float32 ones for a float32 result),
    NaN becoming null."""
    missing = np.isnan(values)
    target = ARROW_TYPES[dtype]
    if dtype.startswith(("int", "uint")) or dtype == "bool":
        values = np.where(missing, 0, values).astype(target.to_pandas_dtype())
    else:
        values = values.astype(target.to_pandas_dtype(), copy=False)
    return pa.array(values, mask=missing if missing.any() else None, type=target)


def numeric_values(column) -> np.ndarray:
    """The column as a NumPy array that reads as float64 with NaN for missing, copying only when
    needed (a float column without nulls is used in place)."""
    arr = one_array(column)
    if pa.types.is_floating(arr.type):
        return arr.to_numpy(zero_copy_only=False)  # nulls come back as NaN
    return float_values(arr)
