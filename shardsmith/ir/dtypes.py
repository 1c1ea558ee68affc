"""The dtypes of the IR: one table, from which every other layer takes what it needs (the Arrow
type a column is read and written as, a value's width, the C type of a kernel's storage, which
dtypes a tensor can hold).

>>> DTYPES["float32"].itemsize, is_numeric("date"), arrow_type("int8")
(4, False, DataType(int8))
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class DType:
    """One dtype: ``kind`` is int, uint, float, bool, string, binary, date or timestamp; ``itemsize``
    the bytes a value takes (None: variable width); ``c_type`` what a kernel stores it as."""

    name: str
    kind: str
    itemsize: int | None
    arrow: pa.DataType
    c_type: str | None = None


DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("int8", "int", 1, pa.int8(), "signed char"),
    DType("int16", "int", 2, pa.int16(), "short"),
    DType("int32", "int", 4, pa.int32(), "int"),
    DType("int64", "int", 8, pa.int64(), "long long"),
    DType("uint8", "uint", 1, pa.uint8(), "unsigned char"),
    DType("uint16", "uint", 2, pa.uint16(), "unsigned short"),
    DType("uint32", "uint", 4, pa.uint32(), "unsigned int"),
    DType("uint64", "uint", 8, pa.uint64(), "unsigned long long"),
    DType("float16", "float", 2, pa.float16(), "ss_u16"),
    DType("float32", "float", 4, pa.float32(), "float"),
    DType("float64", "float", 8, pa.float64(), "double"),
    DType("bool", "bool", 1, pa.bool_(), "ss_u8"),
    DType("string", "string", None, pa.string()),
    DType("binary", "binary", None, pa.binary()),
    DType("timestamp", "timestamp", 8, pa.timestamp("us")),
    DType("date", "date", 4, pa.date32()),
)}

INT_DTYPES = tuple(n for n, d in DTYPES.items() if d.kind in ("int", "uint"))
FLOAT_DTYPES = tuple(n for n, d in DTYPES.items() if d.kind == "float")
NUMERIC_DTYPES = (*INT_DTYPES, *FLOAT_DTYPES, "bool")  # what a tensor (and an .npy array) holds
# Every Arrow type that reads as a dtype: the table's own, and the other layouts of the same values.
_ARROW_NAMES = {**{d.arrow: n for n, d in DTYPES.items() if d.kind != "timestamp"},
                pa.large_string(): "string", pa.string_view(): "string", pa.large_binary(): "binary"}


def is_numeric(dtype: str) -> bool:
    return dtype in NUMERIC_DTYPES


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def float_result(dtype: str) -> str:
    """The dtype of a continuous op's result: float64 stays float64, everything else is float32."""
    return "float64" if dtype == "float64" else "float32"


def dtype_of(t: pa.DataType) -> str:
    """The dtype name of an Arrow type (dictionaries by their values; unknown types by Arrow's name)."""
    if pa.types.is_dictionary(t):
        return dtype_of(t.value_type)
    if pa.types.is_timestamp(t):
        return "timestamp"
    return _ARROW_NAMES.get(t, str(t))


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type a column of ``dtype`` is written as (timestamps keep their own unit: see
    :func:`arrow_types`)."""
    return DTYPES[dtype].arrow


# name -> Arrow type for the dtypes whose Arrow type is fixed (all but timestamp, whose unit varies).
ARROW_TYPES = {n: d.arrow for n, d in DTYPES.items() if d.kind != "timestamp"}


def width(dtype: str, variable: int = 32) -> int:
    """Bytes a value takes; ``variable`` for strings and binary (an assumption for sizing shards)."""
    d = DTYPES.get(dtype)
    return d.itemsize if d is not None and d.itemsize is not None else variable
