"""cuDF columns as raw device buffers and back: the seam between cuDF and our CuPy kernels.

A cuDF column is an Arrow-layout device column (pylibcudf.Column): a data buffer (for strings:
the bytes, with an offsets child), an optional validity bitmask (bit i of 32-bit word i/32, least
significant first) and an offset into both. Kernels get pointers to these buffers directly, so
nothing is copied on the way in; their outputs (values plus a bitmask they wrote) become cuDF
columns without a copy on the way out.
"""

from __future__ import annotations

import cudf
import cupy as cp
import numpy as np
import pyarrow as pa
import pylibcudf as plc

T = plc.TypeId
_FIXED = {T.INT8: np.int8, T.INT16: np.int16, T.INT32: np.int32, T.INT64: np.int64, T.UINT8: np.uint8,
          T.UINT16: np.uint16, T.UINT32: np.uint32, T.UINT64: np.uint64, T.FLOAT32: np.float32,
          T.FLOAT64: np.float64, T.BOOL8: np.uint8, T.TIMESTAMP_DAYS: np.int32, T.TIMESTAMP_SECONDS: np.int64,
          T.TIMESTAMP_MILLISECONDS: np.int64, T.TIMESTAMP_MICROSECONDS: np.int64,
          T.TIMESTAMP_NANOSECONDS: np.int64}
_TYPE_OF = {np.dtype(np.int8): T.INT8, np.dtype(np.int16): T.INT16, np.dtype(np.int32): T.INT32,
            np.dtype(np.int64): T.INT64, np.dtype(np.uint8): T.UINT8, np.dtype(np.uint16): T.UINT16,
            np.dtype(np.uint32): T.UINT32, np.dtype(np.uint64): T.UINT64, np.dtype(np.float32): T.FLOAT32,
            np.dtype(np.float64): T.FLOAT64, np.dtype(np.bool_): T.BOOL8}


def plc_column(series) -> plc.Column:
    return series.to_pylibcudf()[0]


def kind(series) -> str:
    """'string', 'bool', 'float', 'int' or 'other' (by the physical column type)."""
    tid = plc_column(series).type().id()
    if tid == T.STRING:
        return "string"
    if tid == T.BOOL8:
        return "bool"
    if tid in (T.FLOAT32, T.FLOAT64):
        return "float"
    return "int" if tid in _FIXED else "other"


def arrow_type(series) -> pa.DataType:
    return plc_column(series).type().to_arrow()


def _device_array(ptr: int, nbytes: int, dtype, count: int, owner) -> cp.ndarray:
    """A CuPy view of device memory that ``owner`` keeps alive."""
    if count == 0 or ptr == 0:
        return cp.empty(0, dtype=dtype)
    mem = cp.cuda.UnownedMemory(ptr, nbytes, owner)
    return cp.ndarray((count,), dtype=dtype, memptr=cp.cuda.MemoryPointer(mem, 0))


def mask_words(series) -> tuple[cp.ndarray | None, int]:
    """The validity bitmask as uint32 words and the column's bit offset into it; None: no nulls."""
    col = plc_column(series)
    mask = col.null_mask()
    if mask is None or col.null_count() == 0:
        return None, 0
    return _device_array(mask.ptr, mask.size, np.uint32, mask.size // 4, series), col.offset()


def values(series) -> cp.ndarray:
    """The fixed-width values (booleans as uint8 0/1; any value under a null)."""
    col = plc_column(series)
    dtype = np.dtype(_FIXED[col.type().id()])
    data = col.data()
    if data is None:
        return cp.empty(0, dtype=dtype)
    start = col.offset() * dtype.itemsize
    return _device_array(data.ptr + start, data.size - start, dtype, col.size(), series)


def validity(series) -> cp.ndarray:
    """A bool array: True where the value is not null."""
    words, off = mask_words(series)
    n = len(series)
    if words is None:
        return cp.ones(n, dtype=bool)
    bits = cp.arange(off, off + n, dtype=np.int64)
    return ((words[bits >> 5] >> (bits & 31).astype(np.uint32)) & 1).astype(bool)


def values_and_validity(series) -> tuple[cp.ndarray, cp.ndarray | None]:
    words, _ = mask_words(series)
    return values(series), (None if words is None else validity(series))


def bool_and_validity(series) -> tuple[cp.ndarray, cp.ndarray | None]:
    """A boolean cuDF result as (value, known) arrays."""
    v = values(series).astype(bool)
    words, _ = mask_words(series)
    return v, (None if words is None else validity(series))


def string_buffers(series) -> tuple[cp.ndarray, cp.ndarray]:
    """(offsets from the column's first row, n + 1 of them; all the column's bytes)."""
    col = plc_column(series)
    n, off = col.size(), col.offset()
    if col.num_children() == 0:  # an empty column may have no offsets child
        return cp.zeros(n + 1, dtype=np.int32), cp.zeros(1, dtype=np.uint8)
    oc = col.child(0)
    odt = np.dtype(_FIXED[oc.type().id()])
    od = oc.data()
    offsets = _device_array(od.ptr + (oc.offset() + off) * odt.itemsize, (n + 1) * odt.itemsize, odt, n + 1, series)
    data = col.data()
    chars = _device_array(data.ptr, data.size, np.uint8, data.size, series) if data is not None and data.size else \
        cp.zeros(1, dtype=np.uint8)
    return offsets, chars


def mask_alloc_words(n: int) -> int:
    """uint32 words of a bitmask for ``n`` rows, padded to 64 bytes as libcudf allocates them."""
    return max(16, -(-((n + 31) // 32) // 16) * 16)


def from_device(data: cp.ndarray, mask: cp.ndarray | None = None, null_count: int = 0, type_id=None):
    """A cuDF Series over ``data`` (no copy) with the bitmask ``mask`` (uint32 words) if any nulls."""
    tid = type_id if type_id is not None else _TYPE_OF[np.dtype(data.dtype)]
    n = int(data.shape[0])
    has_mask = mask is not None and null_count > 0
    col = plc.Column(plc.DataType(tid), n, plc.gpumemoryview(data) if n else None,
                     plc.gpumemoryview(mask) if has_mask else None, int(null_count) if has_mask else 0, 0, [])
    return cudf.Series.from_pylibcudf(col)


def from_values(data: cp.ndarray, valid: cp.ndarray | None):
    """A cuDF Series from values and a bool validity array (None: all valid)."""
    if valid is None:
        return from_device(data)
    nulls = int(len(valid) - int(cp.count_nonzero(valid)))
    if nulls == 0:
        return from_device(data)
    return from_device(data, pack_bits(valid), nulls)


def pack_bits(valid: cp.ndarray) -> cp.ndarray:
    """A bool array as a bitmask of uint32 words (little bit order), padded as libcudf expects."""
    n = len(valid)
    words = cp.zeros(mask_alloc_words(n), dtype=np.uint32)
    packed = cp.packbits(valid.astype(np.uint8), bitorder="little")
    words.view(np.uint8)[: len(packed)] = packed
    return words
