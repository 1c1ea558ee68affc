"""Host Arrow helpers that both backends use as they are (a GPU cast from or to strings runs on
the host, exactly as the CPU engine's; quarantined rows are host Arrow tables on either engine,
so their content digests are taken here)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.errors import ShardsmithError
from shardsmith.ir.dtypes import dtype_of
from shardsmith.kernels import digest as D


def cast_each(col: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Value-by-value conversion for a column whose bulk cast failed: the error path only."""
    out, ok = [], np.ones(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(pc.cast(pa.array([v], type=col.type), target, safe=True)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
            ok[i] = False
    return pa.array(out, type=target), ok


def one_array(column) -> pa.Array:
    """A column as one Arrow array: a chunked column of one chunk is that chunk, in place
    (``ChunkedArray.combine_chunks`` would copy it, even then), several are concatenated. The
    CPU engine (backends/cpu/arrays.py) and the content digests read it.

    >>> one_array(pa.chunked_array([[1, 2]])).to_pylist()
    [1, 2]
    """
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def table_digests(table: pa.Table, dtypes: dict[str, str] | None = None) -> dict[str, int]:
    """The content digest (kernels/digest.py) of every column of ``table``, in its order;
    ``dtypes`` names the planned dtype of a column where the Arrow type alone cannot."""
    dtypes = dtypes or {}
    return {name: column_digest(table[name], dtypes.get(name)) for name in table.column_names}


def column_digest(column, dtype: str | None = None) -> int:
    """The content digest of one Arrow column (chunked or not)."""
    arr = one_array(column)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.type in (pa.string_view(), pa.binary_view()):  # another reader's layout of the same values
        arr = arr.cast(pa.large_string() if arr.type == pa.string_view() else pa.large_binary())
    t = arr.type
    tok = D.token(dtype or dtype_of(t), t.unit if pa.types.is_timestamp(t) else None)
    n, k = len(arr), arr.null_count
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if k else None
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        sections = _string_sections(arr, valid)
    elif pa.types.is_boolean(t):
        sections = D.fixed_sections((arr.fill_null(False) if k else arr).to_numpy(zero_copy_only=False), valid)
    else:
        sections = D.fixed_sections(_fixed_values(arr), valid)
    return D.host_column_digest(tok, n, k, sections)


def _string_sections(arr: pa.Array, valid) -> list:
    if valid is not None:  # a null may own bytes in Arrow; the spec gives it none
        arr = arr.fill_null(b"" if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type) else "")
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    return D.string_sections(offsets, data, valid)


def _fixed_values(arr: pa.Array) -> np.ndarray:
    """The values buffer of a fixed-width array as NumPy, without a copy (any value under a null)."""
    t = arr.type
    if pa.types.is_date32(t):
        dtype = np.dtype(np.int32)
    elif pa.types.is_timestamp(t):
        dtype = np.dtype(np.int64)
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        dtype = np.dtype(t.to_pandas_dtype())
    else:
        raise ShardsmithError(f"no content digest is specified for columns of type {t}", "output schema")
    buf = arr.buffers()[1]
    if buf is None:
        return np.zeros(len(arr), dtype=dtype)
    return np.frombuffer(buf, dtype=dtype)[arr.offset : arr.offset + len(arr)]


# --- string functions of the expression language (ir/expr.py) --------------------------------------
# Both engines compute these with Arrow on the host, so that one library's Unicode rules define them.
def text_function(fn: str, arr: pa.Array, params: tuple) -> tuple[str, pa.Array]:
    """(kind, result) of a string function of the expression language over a string array."""
    if fn == "lower":
        return "string", pc.utf8_lower(arr)
    if fn == "upper":
        return "string", pc.utf8_upper(arr)
    if fn == "length":
        return "int", pc.utf8_length(arr).cast(pa.int64())
    if fn == "substr":
        stop = params[0] + params[1] if len(params) > 1 else None
        return "string", pc.utf8_slice_codeunits(arr, params[0], stop)
    if fn == "starts_with":
        return "bool", pc.starts_with(arr, pattern=params[0])
    if fn == "contains":
        return "bool", pc.match_substring(arr, pattern=params[0])
    raise ValueError(f"unknown string function {fn}")


def text_value(value, n: int) -> pa.Array:
    """A string operand as an array of ``n`` rows (a literal repeated; None: all null)."""
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    return pa.array([value] * n, type=pa.string()) if value is not None else pa.nulls(n, pa.string())


def text_if_else(cond: pa.Array, a, b) -> pa.Array:
    """``if_else`` over strings: ``cond`` a boolean array whose nulls give null."""
    n = len(cond)
    return pc.if_else(cond, text_value(a, n), text_value(b, n))


def text_coalesce(values: list, n: int) -> pa.Array:
    return pc.coalesce(*[text_value(v, n) for v in values])
