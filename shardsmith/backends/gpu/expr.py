"""Evaluate filter predicates (ops/rows.py) on device arrays with the CPU engine's exact meaning.

The CPU engine lowers a predicate to a pyarrow compute expression (backends/cpu/expr.py); this
module gives the same answer from arrays in ``xp`` (CuPy on the GPU; NumPy in the tests, which
compare it with pyarrow on random data):

* a comparison or arithmetic with a null operand is null; NaN is a value (IEEE comparisons);
* numbers are compared and combined in Arrow's common type of the two operands (asked of pyarrow
  on empty arrays, so integer arithmetic wraps in the same width and float32 stays float32), after
  narrowing a literal beside a column the way Arrow's expressions do (``i8 + 100`` runs in int8);
  ``/`` is true division in float64. Where Arrow refuses a cast to the common type (an int64 above
  2**24 against a float literal), the CPU engine stops with Arrow's error; this evaluator computes on;
* ``and`` / ``or`` follow Kleene logic (false and null is false; true or null is true);
* ``is_null`` / ``not_null`` count NaN as null; ``in`` is null for a missing value, else an exact
  match against the literals cast to the column's type (or, where they do not fit, in the common
  type), floats by their bits as Arrow's set lookup does (-0.0 is not in (0,));
* the filter keeps the rows whose predicate is true.

A frame is reached through an adapter (:class:`CudfColumns` on the GPU) that hands out each column
as :class:`Num`, :class:`Truth` or :class:`Text` and answers the string operations.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.ir.expr import Col, Lit


@dataclass
class Num:
    values: Any  # an xp array (any value under a null) or a scalar
    valid: Any  # an xp bool array, or None: no nulls
    type: pa.DataType
    literal: bool = False  # a literal as written (Arrow narrows these beside a column)


@dataclass
class Truth:
    value: Any  # xp bool array or Python bool
    known: Any  # xp bool array, or None: never null


@dataclass
class Text:
    column: Any  # the adapter's string column, or a Python str (a literal)


_CMP = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
        "ge": operator.ge}
_ARITH = {"add": (operator.add, pc.add), "sub": (operator.sub, pc.subtract), "mul": (operator.mul, pc.multiply)}


def keep_mask(node, cols):
    """The rows to keep (an xp bool array): those whose predicate is true."""
    t = evaluate(node, cols)
    xp, n = cols.xp, cols.num_rows
    value = xp.full(n, bool(t.value), dtype=bool) if np.ndim(t.value) == 0 else t.value
    return value if t.known is None else value & t.known


def evaluate(node, cols):  # noqa: C901 - one branch per node kind is the clearest layout
    if isinstance(node, Col):
        return cols.column(node.name)
    if isinstance(node, Lit):
        return _literal(node.value)
    fn, args = node.fn, node.args
    if fn in ("and", "or"):
        out = evaluate(args[0], cols)
        for a in args[1:]:
            out = _kleene(fn, out, evaluate(a, cols), cols.xp)
        return out
    if fn == "not":
        t = evaluate(args[0], cols)
        return Truth(_neg(t.value), t.known)
    if fn in ("is_null", "not_null"):
        missing = _missing(evaluate(args[0], cols), cols)
        return Truth(missing if fn == "is_null" else ~missing, None)
    if fn == "is_in":
        return _is_in(evaluate(args[0], cols), tuple(args[1]), cols)
    left, right = evaluate(args[0], cols), evaluate(args[1], cols)
    if fn in _CMP:
        return _compare(fn, left, right, cols)
    return _arith(fn, left, right)


def _literal(v):
    if isinstance(v, bool):
        return Truth(v, None)
    if isinstance(v, str):
        return Text(v)
    return Num(v, None, pa.scalar(v).type, literal=True)


def _narrow(v: Num, other) -> Num:
    """A literal beside a non-literal operand takes Arrow's narrowest type that holds it exactly
    (integers: int8, int16, int32 or int64; floats: float32 when exact), as Arrow's expression
    binding does; the operation then runs in the common type of the two."""
    if not v.literal or (isinstance(other, Num) and other.literal):
        return v
    if isinstance(v.values, int):
        for t, bits in ((pa.int8(), 8), (pa.int16(), 16), (pa.int32(), 32)):
            if -(2 ** (bits - 1)) <= v.values < 2 ** (bits - 1):
                return Num(v.values, None, t)
        return Num(v.values, None, pa.int64())
    with np.errstate(over="ignore"):
        exact = float(np.float32(v.values)) == v.values
    return Num(v.values, None, pa.float32() if exact else pa.float64())


def _and_valid(a, b):
    if a is None:
        return b
    return a if b is None else a & b


def _kleene(fn: str, a: Truth, b: Truth, xp) -> Truth:
    """Kleene and / or: a known false (and) or a known true (or) decides, whatever the other side."""
    value = (a.value & b.value) if fn == "and" else (a.value | b.value)
    if a.known is None and b.known is None:
        return Truth(value, None)
    ka = True if a.known is None else a.known
    kb = True if b.known is None else b.known
    decides_a = _neg(a.value) if fn == "and" else a.value
    decides_b = _neg(b.value) if fn == "and" else b.value
    return Truth(value, (ka & kb) | (ka & decides_a) | (kb & decides_b))


def _neg(v):
    return (not v) if isinstance(v, bool) else ~v


def _missing(v, cols):
    xp = cols.xp
    if isinstance(v, Text):
        return cols.text_is_null(v) if not isinstance(v.column, str) else xp.zeros(cols.num_rows, dtype=bool)
    if isinstance(v, Truth):
        return ~v.known if v.known is not None else xp.zeros(cols.num_rows, dtype=bool)
    out = xp.zeros(cols.num_rows, dtype=bool) if v.valid is None else ~v.valid
    if pa.types.is_floating(v.type):
        out = out | xp.isnan(_as_array(v.values, v.type, cols))
    return out


def common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """Arrow's common numeric type of two operands (what its kernels cast both to)."""
    return pc.add(pa.array([], type=a), pa.array([], type=b)).type


def _np_dtype(t: pa.DataType):
    return np.dtype(t.to_pandas_dtype())


def _as(v: Num, t: pa.DataType):
    dtype = _np_dtype(t)
    if np.ndim(v.values) == 0:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.array(v.values).astype(dtype)[()]
    return v.values.astype(dtype, copy=False)


def _as_array(values, t, cols):
    return values if np.ndim(values) else cols.xp.full(cols.num_rows, values)


def _compare(fn: str, a, b, cols) -> Truth:
    if isinstance(a, Text) or isinstance(b, Text):
        return cols.text_compare(fn, a, b)
    if isinstance(a, Truth):
        return Truth(_CMP[fn](a.value, b.value), _and_valid(a.known, b.known))
    a, b = _narrow(a, b), _narrow(b, a)
    t = common_type(a.type, b.type)
    with np.errstate(invalid="ignore"):
        value = _CMP[fn](_as(a, t), _as(b, t))
    return Truth(value, _and_valid(a.valid, b.valid))


def _arith(fn: str, a: Num, b: Num) -> Num:
    if fn == "div":  # true division: the left side is float64, as the CPU lowering casts it
        a = Num(_as(a, pa.float64()), a.valid, pa.float64())
        b = _narrow(b, a)
        t = pc.divide(pa.array([], type=pa.float64()), pa.array([], type=b.type)).type
        with np.errstate(divide="ignore", invalid="ignore"):
            return Num(_as(a, t) / _as(b, t), _and_valid(a.valid, b.valid), t)
    py_op, arrow_fn = _ARITH[fn]
    a, b = _narrow(a, b), _narrow(b, a)
    t = arrow_fn(pa.array([], type=a.type), pa.array([], type=b.type)).type
    with np.errstate(over="ignore", invalid="ignore"):
        return Num(py_op(_as(a, t), _as(b, t)), _and_valid(a.valid, b.valid), t)


def _is_in(x, values: tuple, cols) -> Truth:
    xp = cols.xp
    known = ~_missing(x, cols)
    if isinstance(x, Text):
        return Truth(cols.text_is_in(x, values), known)
    if isinstance(x, Truth):
        hit = xp.zeros(cols.num_rows, dtype=bool)
        for v in values:
            hit |= x.value == bool(v)
        return Truth(hit, known)
    vs = pa.array(list(values))
    try:  # Arrow casts the literals to the column's type when they fit exactly
        vs = pc.cast(vs, x.type, safe=True)
        t = x.type
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        t = common_type(x.type, vs.type)
        vs = pc.cast(vs, t)
    xs, literals = _as(x, t), vs.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t):  # Arrow's set lookup tells floats apart by their bits: -0.0 is not 0.0
        width = {2: np.uint16, 4: np.uint32, 8: np.uint64}[literals.dtype.itemsize]
        xs, literals = xs.view(width), literals.view(width)
    hit = xp.zeros(cols.num_rows, dtype=bool)
    for v in literals:
        hit |= xs == v
    return Truth(hit, known)


class CudfColumns:
    """The adapter over a cuDF DataFrame: device views of its columns, cuDF for strings."""

    def __init__(self, frame):
        import cupy  # lazy: the predicate logic is tested on the host without CuPy

        from shardsmith.backends.gpu import columns as C  # lazy: columns imports cuDF

        self.frame, self.xp, self._C = frame, cupy, C
        self.num_rows = len(frame)

    def column(self, name: str):
        C = self._C
        s = self.frame[name]
        kind = C.kind(s)
        if kind == "string" or pa.types.is_timestamp(C.arrow_type(s)):  # timestamps compare with text
            return Text(s)
        values, valid = C.values_and_validity(s)
        if kind == "bool":
            return Truth(values.view(bool) if values.dtype != bool else values, valid)
        return Num(values, valid, C.arrow_type(s))

    def text_is_null(self, t: Text):
        return ~self._C.validity(t.column)

    def text_compare(self, fn: str, a, b) -> Truth:
        if not (isinstance(a, Text) and isinstance(b, Text)):
            raise TypeError(f"cannot compare {a!r} with {b!r}")
        left = a.column
        right = b.column
        if isinstance(left, str):  # a literal on the left: flip the comparison
            left, right = right, left
            fn = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}.get(fn, fn)
        value, known = self._C.bool_and_validity(_CMP[fn](left, right))
        for side in (left, right):  # a null operand makes the comparison null, whatever cuDF says
            if not isinstance(side, str):
                v = self._C.validity(side)
                known = v if known is None else (known & v)
        return Truth(value, known)

    def text_is_in(self, t: Text, values: tuple):
        return self._C.bool_and_validity(t.column.isin(list(values)))[0]
