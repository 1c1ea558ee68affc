"""Evaluate expressions (``filter`` predicates, ``derive`` columns) with the meaning written down in
ir/expr.py, once for both engines: as array code over ``xp`` (NumPy on the CPU engine, CuPy on the
GPU engine) and a frame adapter that hands out columns in their canonical form and does what
strings need (backends/cpu/expr.py over pyarrow, backends/gpu/expr.py over cuDF).

Every operation here is exactly rounded IEEE arithmetic, integer arithmetic or a comparison (no
library math functions), one array operation at a time, so NumPy and CuPy give the same bits.

A value is a :class:`Val`: its kind; its data (an xp array, or a NumPy scalar for literals; for
strings the adapter's column or a Python str); and its validity (an xp bool array, or None when
nothing is null). Floats carry NaN in their data: missing too, for the functions that say so.

>>> import numpy as np
>>> from shardsmith.ir.expr import parse_expression
>>> class Cols:  # the smallest adapter: two int columns
...     xp, num_rows = np, 3
...     def column(self, name):
...         return Val("int", np.array([7, -7, 5]) if name == "a" else np.array([2, 2, 0]), None)
>>> v = evaluate(parse_expression("a // b", "k"), Cols())  # floor division; by zero: null
>>> [x if ok else None for x, ok in zip(v.data.tolist(), v.valid.tolist())]
[3, -4, None]
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from shardsmith.ir.expr import ARITH, COMPARISONS, Col, Lit
from shardsmith.ir.expr_types import time_literal

US_PER_DAY = 86_400_000_000
_CMP = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
        "ge": operator.ge}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


@dataclass
class Val:
    kind: str  # bool int float string date timestamp null
    data: Any
    valid: Any = None

    @property
    def scalar(self) -> bool:
        return self.kind != "string" and np.ndim(self.data) == 0 or isinstance(self.data, str)


# --- entry points --------------------------------------------------------------------------------
def keep_mask(node, cols):
    """The rows a predicate keeps (an xp bool array): those where it is true."""
    v = evaluate(node, cols)
    value = full(cols, v.data if v.kind == "bool" else False, bool)
    return value if v.valid is None else value & v.valid


def evaluate(node, cols) -> Val:
    with np.errstate(all="ignore"):  # overflow wraps, x / 0 is inf: the rules say so
        return _eval(node, cols)


def missing(v: Val, cols):
    """Where ``v`` is missing (null, or NaN in a float), as an xp bool array."""
    xp = cols.xp
    if v.kind == "null":
        return full(cols, True, bool)
    if v.kind == "string":
        return ~cols.text_valid(v.data) if not isinstance(v.data, str) else full(cols, False, bool)
    out = full(cols, False, bool) if v.valid is None else ~v.valid
    if v.kind == "float":
        out = out | xp.isnan(full(cols, v.data, np.float64))
    return out


def full(cols, data, dtype):
    """``data`` as an xp array of the frame's length (a scalar is repeated)."""
    xp = cols.xp
    if np.ndim(data) == 0:
        return xp.full(cols.num_rows, data, dtype=dtype)
    return data if data.dtype == dtype else data.astype(dtype)


def _eval(node, cols) -> Val:
    if isinstance(node, Col):
        return cols.column(node.name)
    if isinstance(node, Lit):
        return literal(node.value)
    fn = node.fn
    if fn in ("and", "or"):
        out = truth(_eval(node.args[0], cols), cols)
        for a in node.args[1:]:
            out = _kleene(fn, out, truth(_eval(a, cols), cols), cols)
        return out
    if fn == "is_in":
        return _is_in(_eval(node.args[0], cols), node.args[1], cols)
    args = [_eval(a, cols) for a in node.args]
    if fn in ARITH:
        out = args[0]
        for b in args[1:]:
            out = _binary(fn, out, b, cols)
        return out
    if fn in COMPARISONS:
        return _compare(fn, args[0], args[1], cols)
    return _FUNCTIONS[fn](node, args, cols)


def literal(value) -> Val:
    if value is None:
        return Val("null", np.int64(0), None)
    if isinstance(value, bool):
        return Val("bool", np.bool_(value))
    if isinstance(value, int):
        return Val("int", np.int64(value))
    if isinstance(value, float):
        return Val("float", np.float64(value))
    return Val("string", value)


def _and_valid(a, b):
    if a is None:
        return b
    return a if b is None else a & b


def _none_valid(cols):
    return cols.xp.zeros(cols.num_rows, dtype=bool)


# --- logic ---------------------------------------------------------------------------------------
def truth(v: Val, cols) -> Val:
    """A bool value (null literals become an unknown bool)."""
    if v.kind == "null":
        return Val("bool", np.bool_(False), _none_valid(cols))
    return v


def _kleene(fn: str, a: Val, b: Val, cols) -> Val:
    """Kleene and / or: a known false (and) or a known true (or) decides whatever the other side."""
    value = (a.data & b.data) if fn == "and" else (a.data | b.data)
    if a.valid is None and b.valid is None:
        return Val("bool", value)
    ka = True if a.valid is None else a.valid
    kb = True if b.valid is None else b.valid
    decides_a = ~a.data if fn == "and" else a.data
    decides_b = ~b.data if fn == "and" else b.data
    known = (ka & kb) | (ka & decides_a) | (kb & decides_b)
    return Val("bool", value, full(cols, known, bool))


def _not(node, args, cols) -> Val:
    v = truth(args[0], cols)
    return Val("bool", ~v.data, v.valid)


def _is_null(node, args, cols) -> Val:
    m = missing(args[0], cols)
    return Val("bool", m if node.fn == "is_null" else ~m)


# --- numbers -------------------------------------------------------------------------------------
def _null_of(kind: str, cols) -> Val:
    return Val(kind, np.float64(np.nan) if kind == "float" else np.int64(0), _none_valid(cols))


def as_float(v: Val):
    return v.data.astype(np.float64) if np.ndim(v.data) else np.float64(v.data)


def _binary(fn: str, a: Val, b: Val, cols) -> Val:
    kind = "float" if fn == "div" or "float" in (a.kind, b.kind) else "int"
    if "null" in (a.kind, b.kind):
        return _null_of(kind, cols)
    valid = _and_valid(a.valid, b.valid)
    xp = cols.xp
    if kind == "float":
        x, y = as_float(a), as_float(b)
        if fn == "floordiv":
            return Val(kind, xp.floor(x / y), valid)
        if fn == "mod":
            r = xp.fmod(x, y)
            return Val(kind, xp.where((r != 0) & ((r < 0) != (y < 0)), r + y, r), valid)
        return Val(kind, _ARITH_OPS[fn](x, y), valid)
    x, y = a.data, b.data
    if fn in ("floordiv", "mod"):
        return _int_division(fn, x, y, valid, cols)
    return Val(kind, _ARITH_OPS[fn](x, y), valid)


_ARITH_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


def _int_division(fn: str, x, y, valid, cols) -> Val:
    """Integer ``//`` and ``%`` rounding toward minus infinity; by zero: null; by -1 without the
    overflow trap of INT64_MIN // -1 (the quotient wraps, the remainder is 0)."""
    xp = cols.xp
    zero = y == 0
    minus_one = y == -1
    safe = xp.where(zero | minus_one, np.int64(1), y)
    if fn == "floordiv":
        out = xp.where(minus_one, np.int64(0) - x, xp.floor_divide(x, safe))
    else:
        out = xp.where(minus_one, np.int64(0), xp.remainder(x, safe))
    if np.ndim(zero) == 0 and not zero:
        return Val("int", out, valid)
    return Val("int", out, _and_valid(valid, full(cols, ~zero, bool)))


def _neg(node, args, cols) -> Val:
    v = args[0]
    if v.kind == "null":
        return v
    return Val(v.kind, -v.data if v.kind == "float" else np.int64(0) - v.data, v.valid)


def _abs(node, args, cols) -> Val:
    v = args[0]
    if v.kind == "float":
        return Val(v.kind, cols.xp.abs(v.data), v.valid)
    if v.kind == "int":  # INT64_MIN stays INT64_MIN (wraps)
        return Val(v.kind, cols.xp.where(v.data < 0, np.int64(0) - v.data, v.data), v.valid)
    return v


def _floor_ceil(node, args, cols) -> Val:
    v = args[0]
    if v.kind != "float":
        return v
    return Val(v.kind, (cols.xp.floor if node.fn == "floor" else cols.xp.ceil)(v.data), v.valid)


def _round(node, args, cols) -> Val:
    v = args[0]
    digits = int(node.args[1].value) if len(node.args) > 1 else 0
    xp = cols.xp
    if v.kind == "float":
        if digits == 0:
            return Val(v.kind, xp.rint(v.data), v.valid)
        scale = np.float64(10.0 ** abs(digits))
        data = xp.rint(v.data * scale) / scale if digits > 0 else xp.rint(v.data / scale) * scale
        return Val(v.kind, data, v.valid)
    if v.kind != "int" or digits >= 0:
        return v
    if -digits >= 19:  # 10**19 exceeds every int64: everything rounds to 0
        return Val(v.kind, v.data * np.int64(0), v.valid)
    m = np.int64(10 ** (-digits))
    q = xp.floor_divide(v.data, m)
    r = v.data - q * m  # in [0, m)
    up = (r * 2 > m) | ((r * 2 == m) & (q % 2 != 0))
    return Val(v.kind, (q + up.astype(np.int64)) * m, v.valid)


def _least_greatest(node, args, cols) -> Val:
    kind = unified_kind(args)
    vals = [convert(a, kind, cols) for a in args if a.kind != "null"]
    if not vals:
        return _null_of(kind, cols)
    better = operator.lt if node.fn == "least" else operator.gt
    acc, acc_ok = None, None
    for v in vals:
        ok = ~missing(v, cols)
        data = full(cols, v.data, np.float64 if kind == "float" else np.int64)
        if acc is None:
            acc, acc_ok = data, ok
            continue
        take = ok & (~acc_ok | better(data, acc))
        acc = cols.xp.where(take, data, acc)
        acc_ok = acc_ok | ok
    return Val(kind, acc, acc_ok)


# --- choosing ------------------------------------------------------------------------------------
def unified_kind(vals) -> str:
    """The kind that ``if_else`` / ``coalesce`` / ``least`` give (the checker has allowed it)."""
    kinds = {v.kind for v in vals if v.kind != "null"}
    if not kinds:
        return "null"
    if kinds <= {"int", "float"}:
        return "float" if "float" in kinds else "int"
    time = kinds & {"date", "timestamp"}
    if time:
        return "timestamp" if "timestamp" in time else "date"
    return kinds.pop()


def convert(v: Val, kind: str, cols) -> Val:
    """``v`` as ``kind``: an int as float, a string literal or a date as a date or timestamp."""
    if v.kind == kind or v.kind == "null":
        return v
    if kind == "float":
        return Val(kind, as_float(v), v.valid)
    if kind in ("date", "timestamp") and v.kind == "string":
        return Val(kind, np.int64(time_literal(v.data, kind)), None)
    if kind == "timestamp" and v.kind == "date":
        return Val(kind, v.data * np.int64(US_PER_DAY), v.valid)
    return v


def _if_else(node, args, cols) -> Val:
    cond = truth(args[0], cols)
    kind = unified_kind(args[1:])
    a, b = (convert(x, kind, cols) for x in args[1:])
    if kind == "string":
        return Val(kind, cols.text_if_else(cond.data, cond.valid, _text(a), _text(b)))
    if kind == "null":
        return _null_of("int", cols)
    xp = cols.xp
    dtype = np.float64 if kind == "float" else bool if kind == "bool" else np.int64
    pick = full(cols, cond.data, bool)
    data = xp.where(pick, full(cols, a.data, dtype), full(cols, b.data, dtype))
    va, vb = (full(cols, True, bool) if v.valid is None else v.valid for v in (a, b))
    valid = xp.where(pick, va, vb)
    if a.kind == "null":
        valid = valid & ~pick
    if b.kind == "null":
        valid = valid & pick
    return Val(kind, data, valid if cond.valid is None else valid & cond.valid)


def _text(v: Val):
    return None if v.kind == "null" else v.data


def _coalesce(node, args, cols) -> Val:
    kind = unified_kind(args)
    vals = [convert(a, kind, cols) for a in args if a.kind != "null"]
    if kind == "string":
        return Val(kind, cols.text_coalesce([v.data for v in vals]))
    if not vals:
        return _null_of("int", cols)
    xp = cols.xp
    dtype = np.float64 if kind == "float" else bool if kind == "bool" else np.int64
    acc, acc_missing = full(cols, vals[0].data, dtype), missing(vals[0], cols)
    for v in vals[1:]:
        acc = xp.where(acc_missing, full(cols, v.data, dtype), acc)
        acc_missing = acc_missing & missing(v, cols)
    return Val(kind, acc, ~acc_missing)


# --- comparisons ---------------------------------------------------------------------------------
def _compare(fn: str, a: Val, b: Val, cols) -> Val:
    if a.kind in ("date", "timestamp") or b.kind in ("date", "timestamp"):
        kind = unified_kind([a, b])
        a, b = convert(a, kind, cols), convert(b, kind, cols)
    if a.kind == "string":
        if isinstance(a.data, str):  # a literal on the left: flip the comparison
            a, b, fn = b, a, _FLIP[fn]
        value, known = cols.text_compare(fn, a.data, b.data)
        return Val("bool", value, known)
    if a.kind in ("int", "float") and "float" in (a.kind, b.kind):
        x, y = as_float(a), as_float(b)
    else:
        x, y = a.data, b.data
    return Val("bool", full(cols, _CMP[fn](x, y), bool), _and_valid(a.valid, b.valid))


def _is_in(x: Val, values: tuple, cols) -> Val:
    known = ~missing(x, cols)
    xp = cols.xp
    if x.kind == "string":
        return Val("bool", cols.text_is_in(x.data, values), known)
    if x.kind in ("date", "timestamp"):
        literals = [time_literal(v, x.kind) for v in values]
        data = x.data
    elif x.kind == "float" or any(isinstance(v, float) for v in values):
        literals, data = [float(v) for v in values], as_float(x)
    else:
        literals, data = [int(v) for v in values], x.data
    hit = xp.zeros(cols.num_rows, dtype=bool)
    for v in literals:
        hit |= full(cols, data == v, bool)
    return Val("bool", hit, known)


# --- strings and time ----------------------------------------------------------------------------
def _string_function(node, args, cols) -> Val:
    v = args[0]
    if v.kind == "null":
        return _null_of({"length": "int", "starts_with": "bool", "contains": "bool"}.get(node.fn, "int"), cols)
    params = tuple(a.value for a in node.args[1:])
    return cols.text_function(node.fn, v.data, params)


def civil(days, xp):
    """(year, month, day) of day counts since 1970-01-01 in the proleptic Gregorian calendar
    (H. Hinnant's days-to-civil, in integer arithmetic)."""
    z = days + np.int64(719_468)
    era = xp.floor_divide(z, np.int64(146_097))
    doe = z - era * np.int64(146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = xp.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * np.int64(400) + (month <= 2).astype(np.int64)
    return year, month, day


def days_from_civil(year, month, day, xp):
    """Day counts since 1970-01-01 of (year, month, day) (the inverse of :func:`civil`)."""
    y = year - (month <= 2).astype(np.int64)
    era = xp.floor_divide(y, np.int64(400))
    yoe = y - era * np.int64(400)
    mp = xp.where(month > 2, month - 3, month + 9)
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * np.int64(146_097) + doe - np.int64(719_468)


def _time_part(node, args, cols) -> Val:
    v = args[0]
    if v.kind == "null":
        return _null_of("int", cols)
    xp, fn = cols.xp, node.fn
    data = full(cols, v.data, np.int64)
    if v.kind == "timestamp":
        days = xp.floor_divide(data, np.int64(US_PER_DAY))
        if fn in ("hour", "minute", "epoch_seconds"):
            if fn == "epoch_seconds":
                return Val("int", xp.floor_divide(data, np.int64(1_000_000)), v.valid)
            micros = data - days * np.int64(US_PER_DAY)
            unit = 3_600_000_000 if fn == "hour" else 60_000_000
            part = micros // np.int64(unit)
            return Val("int", part if fn == "hour" else part % 60, v.valid)
    else:
        days = data
        if fn == "epoch_seconds":
            return Val("int", days * np.int64(86_400), v.valid)
    if fn == "day_of_week":  # 1970-01-01 was a Thursday (3 with Monday as 0)
        return Val("int", xp.remainder(days + np.int64(3), np.int64(7)), v.valid)
    year, month, day = civil(days, xp)
    if fn == "day_of_year":
        jan1 = days_from_civil(year, xp.ones_like(month), xp.ones_like(day), xp)
        return Val("int", days - jan1 + 1, v.valid)
    return Val("int", {"year": year, "month": month, "day": day}[fn], v.valid)


_FUNCTIONS = {
    "not": _not, "neg": _neg, "is_null": _is_null, "not_null": _is_null, "if_else": _if_else,
    "coalesce": _coalesce, "abs": _abs, "floor": _floor_ceil, "ceil": _floor_ceil, "round": _round,
    "least": _least_greatest, "greatest": _least_greatest,
    **{f: _string_function for f in ("lower", "upper", "length", "substr", "starts_with", "contains")},
    **{f: _time_part for f in ("year", "month", "day", "hour", "minute", "day_of_week", "day_of_year",
                               "epoch_seconds")},
}


# --- results -------------------------------------------------------------------------------------
_INT_RANGE = {"int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1),
              "int64": (-(2**63), 2**63 - 1), "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
              "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1)}


def result(v: Val, dtype: str, cols):
    """A derived column's values as (xp array of ``dtype``'s NumPy type, validity or None), for a
    numeric, bool, date or timestamp ``dtype`` (the conversion rules of ir/expr.py)."""
    xp = cols.xp
    ok = ~missing(v, cols)
    if v.kind in ("date", "timestamp") or dtype in ("date", "timestamp"):
        data = full(cols, v.data, np.int64)
        return (data.astype(np.int32) if dtype == "date" else data), ok
    if dtype == "bool":
        return full(cols, v.data != 0, bool), ok
    if dtype.startswith("float"):
        return full(cols, v.data, np.float64).astype(dtype), ok
    lo, hi = _INT_RANGE[dtype]
    if v.kind == "float":
        x = xp.rint(full(cols, v.data, np.float64))
        # Compare in float64, where -2**k and 2**k (just past the top) are exact.
        ok = ok & (x >= float(lo)) & (x < float(hi) + 1.0)
        return xp.where(ok, x, 0.0).astype(dtype), ok
    x = full(cols, v.data, np.int64)
    if dtype == "uint64":
        ok = ok & (x >= 0)
    elif dtype != "int64":
        ok = ok & (x >= lo) & (x <= hi)
    return xp.where(ok, x, np.int64(0)).astype(dtype), ok
