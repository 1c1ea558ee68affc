"""Numeric casts with the CPU engine's exact meaning, written once for NumPy and CuPy (``xp``).

The CPU engine casts with Arrow's safe casts (``pyarrow.compute.cast(safe=True)``) and treats each
value that Arrow refuses as a failure (``cast.on_error``). This module states those rules for
numeric and boolean columns so that the GPU engine reproduces them value for value; the tests check
them against pyarrow itself:

* integer -> integer: values outside the target's range fail;
* integer -> float: values beyond the float's exact integer range (2**24 for float32, 2**53 for
  float64; the bounds included) fail, the others convert exactly;
* float -> integer: NaN, infinities, values with a fractional part and values outside the range fail;
* float -> float: rounds to nearest (float64 -> float32 overflows to infinity; NaN stays NaN);
* bool -> number: 0 or 1; number -> bool: nonzero (NaN included) is true.

:func:`cast` takes the column's values (any value under a null) and returns the converted values
and a mask of the values that failed; nulls are the caller's business (they stay null).
"""

from __future__ import annotations

import numpy as np

NUMERIC = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64", "bool")
_FLOAT_EXACT = {"float32": 2**24, "float64": 2**53}


def is_numeric_cast(src: str, dst: str) -> bool:
    return src in NUMERIC and dst in NUMERIC


def cast(values, src: str, dst: str, xp=np):
    """``(converted, failed)`` for a column of dtype ``src`` cast to ``dst``."""
    failed = xp.zeros(values.shape, dtype=bool)
    if src == dst:
        return values, failed
    if dst == "bool":
        return values != 0, failed
    if src == "bool":
        return values.astype(dst), failed
    if src.startswith("float"):
        if dst.startswith("float"):
            return values.astype(dst), failed
        return _float_to_int(values, dst, xp)
    if dst.startswith("float"):
        limit = _FLOAT_EXACT[dst]
        failed = _outside(values, src, -limit, limit, xp)
        return values.astype(dst), failed
    info = np.iinfo(dst)
    failed = _outside(values, src, int(info.min), int(info.max), xp)
    return xp.where(failed, 0, values).astype(dst), failed


def _outside(values, src: str, lo: int, hi: int, xp):
    """Values of integer dtype ``src`` outside [lo, hi], compared without any overflow: the bounds
    are clipped to ``src``'s own range first (a bound beyond it cannot be crossed)."""
    info = np.iinfo(src)
    out = xp.zeros(values.shape, dtype=bool)
    if lo > int(info.min):
        out |= values < np.array(lo, dtype=src)
    if hi < int(info.max):
        out |= values > np.array(hi, dtype=src)
    return out


def _float_to_int(values, dst: str, xp):
    info = np.iinfo(dst)
    # Compare in float64, where -2**k and 2**k (the first value past the top) are exact.
    x = values.astype(np.float64)
    ok = (x == xp.trunc(x)) & (x >= float(info.min)) & (x < float(int(info.max) + 1))
    return xp.where(ok, x, 0).astype(dst), ~ok
