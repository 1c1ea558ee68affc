"""The type rules of the expression language (written down in ``ir/expr.py``), checked at plan
time against a schema: every error names the config key and the column in the expression.

>>> from shardsmith.ir.expr import parse_expression
>>> from shardsmith.ir.schema import Column, Schema
>>> s = Schema((Column("a", "int32"), Column("t", "timestamp")))
>>> infer(parse_expression("a // 2 + hour(t)", "k"), s, "k"), infer(parse_expression("a / 2", "k"), s, "k")
('int', 'float')
"""

from __future__ import annotations

import datetime
import re

from shardsmith.errors import ConfigError
from shardsmith.ir.dtypes import DTYPES
from shardsmith.ir.expr import ARITH, COMPARISONS, STRING_FUNCTIONS, SYMBOLS, Col, Expr, Lit, brief
from shardsmith.ir.schema import Schema

KINDS = ("bool", "int", "float", "string", "date", "timestamp")
TIME = ("date", "timestamp")
NUMBERS = ("int", "float")
INT64 = (-(2**63), 2**63 - 1)
# The dtype a derived column of each kind gets.
KIND_DTYPES = {"bool": "bool", "int": "int64", "float": "float64", "string": "string", "date": "date",
               "timestamp": "timestamp"}
_DATE_PARTS = ("year", "month", "day", "day_of_week", "day_of_year", "epoch_seconds")
_CLOCK_PARTS = ("hour", "minute")
_STRING_FUNCS = {"lower": "string", "upper": "string", "length": "int"}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def column_kind(dtype: str) -> str | None:
    """The kind a column of ``dtype`` has in expressions (None: not usable)."""
    d = DTYPES.get(dtype)
    if d is None:
        return None
    return {"int": "int", "uint": "int", "float": "float", "bool": "bool", "string": "string", "binary": "string",
            "date": "date", "timestamp": "timestamp"}.get(d.kind)


def check_predicate(node, schema: Schema, key: str) -> str:
    """Check a predicate's columns and types; returns its kind (a filter needs bool)."""
    return infer(node, schema, key)


def infer(node, schema: Schema, key: str) -> str:
    """The kind of ``node`` over ``schema`` (bool, int, float, string, date, timestamp or null)."""
    return _Checker(schema, key).kind(node)


def host_string_functions(node, schema: Schema) -> list[str]:
    """The functions of ``node`` that make or transform strings (the string functions, and
    if_else / coalesce of strings), sorted: the GPU engine runs these on the host."""
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Expr):
            if n.fn in STRING_FUNCTIONS or (n.fn in ("if_else", "coalesce") and infer(n, schema, "") == "string"):
                out.add(n.fn)
            stack.extend(a for a in n.args if isinstance(a, Expr))
    return sorted(out)


def literal_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) else "string"


def time_literal(text: str, kind: str) -> int:
    """An ISO date or timestamp literal as the value the engines compute with: days since
    1970-01-01 for a date, microseconds since 1970-01-01 UTC for a timestamp. ValueError if ``text``
    is not one (a date literal must not have a time of day).

    >>> time_literal("1970-01-02", "date"), time_literal("1970-01-01T00:00:01.5", "timestamp")
    (1, 1500000)
    """
    text = text.strip()
    if kind == "date":
        return (datetime.date.fromisoformat(text) - datetime.date(1970, 1, 1)).days
    text = text[:-1] + "+00:00" if text.endswith("Z") else text
    # Any number of fraction digits: microseconds are the unit, further digits are dropped (floored).
    text = re.sub(r"(\.\d+)", lambda m: (m.group(1) + "00000")[:7], text, count=1)
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def kind_name(kind: str) -> str:
    """How a kind is named in messages: ints and floats are numbers."""
    return "number" if kind in NUMBERS else kind


class _Checker:
    def __init__(self, schema: Schema, key: str):
        self.schema, self.key = schema, key

    def fail(self, node, message: str):
        pos = getattr(node, "pos", 0)  # 0: a node the code built (an expectation's), not parsed text
        raise ConfigError(f"{message} at column {pos}" if pos else message, self.key)

    def kind(self, node) -> str:
        if isinstance(node, Col):
            return self._column(node)
        if isinstance(node, Lit):
            return self._literal(node)
        fn = node.fn
        if fn in ("and", "or", "not"):
            return self._logic(node)
        if fn in ARITH or fn == "neg":
            return self._arith(node)
        if fn in COMPARISONS:
            return self._compare(node)
        if fn == "is_in":
            return self._is_in(node)
        return getattr(self, f"_fn_{fn}", self._function)(node)

    def _column(self, node: Col) -> str:
        if node.name.startswith("__"):
            self.fail(node, f"column names starting with '__' are reserved: {node.name}")
        col = self.schema.require(node.name, self.key)
        kind = column_kind(col.dtype)
        if kind is None:
            self.fail(node, f"column '{node.name}' has dtype {col.dtype}, which expressions cannot use")
        return kind

    def _literal(self, node: Lit) -> str:
        kind = literal_kind(node.value)
        if kind == "int" and not INT64[0] <= node.value <= INT64[1]:
            self.fail(node, f"the integer {node.value} does not fit in 64 bits")
        if kind == "float" and node.value in (float("inf"), float("-inf")):
            self.fail(node, f"the number {brief(node)} is too large for a float64")
        return kind

    def _logic(self, node: Expr) -> str:
        for a in node.args:
            k = self.kind(a)
            if k not in ("bool", "null"):
                self.fail(a, f"'{node.fn}' needs true/false operands, got a {kind_name(k)}: {brief(a)}")
        return "bool"

    def _arith(self, node: Expr) -> str:
        kinds = []
        for a in node.args:
            k = self.kind(a)
            if k not in (*NUMBERS, "null"):
                what = "-" if node.fn == "neg" else f"'{SYMBOLS.get(node.fn, node.fn)}'"
                self.fail(a, f"arithmetic ({what}) needs numbers, got a {k}: {brief(a)}"
                          + (" (use epoch_seconds() for time arithmetic)" if k in TIME else ""))
            kinds.append(k)
        if node.fn == "div":
            return "float"
        return "float" if "float" in kinds else "int" if "int" in kinds else "null"

    def _compare(self, node: Expr) -> str:
        a, b = node.args
        ka, kb = self.kind(a), self.kind(b)
        if "null" in (ka, kb):
            self.fail(node, f"a comparison with null is always null: use is_null() or not_null() in {brief(node)}")
        self._comparable(node, a, ka, b, kb)
        return "bool"

    def _comparable(self, node, a, ka: str, b, kb: str) -> None:
        if ka in NUMBERS and kb in NUMBERS or ka == kb:
            return
        for x, kx, ky in ((a, ka, kb), (b, kb, ka)):
            if ky in TIME and kx == "string" and isinstance(x, Lit):
                self._time_literal(x, ky)
                return
        if ka in TIME and kb in TIME:
            return
        self.fail(node, f"cannot compare {kind_name(ka)} with {kind_name(kb)} in {brief(node)}")

    def _time_literal(self, lit: Lit, kind: str) -> None:
        try:
            time_literal(lit.value, kind)
        except ValueError:
            form = "'2024-03-01'" if kind == "date" else "'2024-03-01T12:30:00'"
            self.fail(lit, f"cannot read {lit.value!r} as a {kind} (expected ISO form, e.g. {form})")

    def _is_in(self, node: Expr) -> str:
        x, values = node.args
        kx = self.kind(x)
        for v in values:
            kv = literal_kind(v)
            self._literal(Lit(v, node.pos))
            if kx in TIME and kv == "string":
                self._time_literal(Lit(v, node.pos), kx)
            elif not (kx == kv or kx in NUMBERS and kv in NUMBERS):
                self.fail(node, f"cannot test a {kind_name(kx)}{' column' if isinstance(x, Col) else ''} against {v!r} "
                          f"in {brief(node)}")
        return "bool"

    # --- functions ---------------------------------------------------------------------------------
    def _function(self, node: Expr) -> str:
        fn = node.fn
        if fn in _DATE_PARTS or fn in _CLOCK_PARTS:
            k = self.kind(node.args[0])
            allowed = ("timestamp",) if fn in _CLOCK_PARTS else TIME
            if k not in allowed and k != "null":
                self.fail(node, f"{fn}() needs a {' or '.join(allowed)}, got a {kind_name(k)}: {brief(node.args[0])}")
            return "int"
        if fn in _STRING_FUNCS:
            self._string_arg(node)
            return _STRING_FUNCS[fn]
        raise ConfigError(f"unknown function {fn}() at column {node.pos}", self.key)  # the parser knows them all

    def _string_arg(self, node: Expr) -> None:
        arg = node.args[0]
        if isinstance(arg, Col) and arg.name in self.schema and self.schema[arg.name].dtype == "binary":
            self.fail(node, f"{node.fn}() needs a string column, '{arg.name}' is binary")
        k = self.kind(arg)
        if k not in ("string", "null"):
            self.fail(node, f"{node.fn}() needs a string, got a {kind_name(k)}: {brief(node.args[0])}")

    def _int_literal(self, node: Expr, arg, what: str, lowest: int | None = 0) -> int:
        if not isinstance(arg, Lit) or literal_kind(arg.value) != "int" or (lowest is not None and arg.value < lowest):
            bound = "" if lowest is None else f" >= {lowest}"
            self.fail(arg if isinstance(arg, (Col, Lit, Expr)) else node,
                      f"{node.fn}() takes its {what} as an integer literal{bound}, got {arg}")
        return arg.value

    def _fn_is_null(self, node: Expr) -> str:
        self.kind(node.args[0])
        return "bool"

    _fn_not_null = _fn_is_null

    def _fn_if_else(self, node: Expr) -> str:
        cond, a, b = node.args
        k = self.kind(cond)
        if k not in ("bool", "null"):
            self.fail(cond, f"if_else() needs a true/false condition, got a {kind_name(k)}: {brief(cond)}")
        return self._unify(node, (a, b))

    def _fn_coalesce(self, node: Expr) -> str:
        return self._unify(node, node.args)

    def _fn_least(self, node: Expr) -> str:
        kind = self._unify(node, node.args)
        if kind not in (*NUMBERS, *TIME, "null"):
            self.fail(node, f"{node.fn}() needs numbers, dates or timestamps, got {kind}s")
        return kind

    _fn_greatest = _fn_least

    def _unify(self, node: Expr, args) -> str:
        """The one kind of ``args``: ints and floats give float; a string literal beside dates or
        timestamps is read as one; null fits anything."""
        kinds = [self.kind(a) for a in args]
        present = {k for k in kinds if k != "null"}
        if present <= set(NUMBERS) and present:
            return "float" if "float" in present else "int"
        time = present & set(TIME)
        if len(time) == 1:
            (t,) = time
            for a, k in zip(args, kinds):
                if k == "string" and isinstance(a, Lit):
                    self._time_literal(a, t)
                elif k not in (t, "null"):
                    break
            else:
                return t
        if len(present) == 1:
            return present.pop()
        if not present:
            return "null"
        names = ", ".join(sorted(kind_name(k) for k in present))
        self.fail(node, f"{node.fn}() needs operands of one kind, got {names}")

    def _fn_abs(self, node: Expr) -> str:
        k = self.kind(node.args[0])
        if k not in (*NUMBERS, "null"):
            self.fail(node, f"{node.fn}() needs a number, got a {k}: {brief(node.args[0])}")
        return k

    _fn_floor = _fn_ceil = _fn_abs

    def _fn_round(self, node: Expr) -> str:
        if len(node.args) == 2:
            self._int_literal(node, node.args[1], "digits", lowest=None)
            if not -400 <= node.args[1].value <= 400:
                self.fail(node.args[1], f"round() takes digits from -400 to 400, got {node.args[1].value}")
        return self._fn_abs(node)

    def _fn_substr(self, node: Expr) -> str:
        self._string_arg(node)
        self._int_literal(node, node.args[1], "start")
        if len(node.args) == 3:
            self._int_literal(node, node.args[2], "length")
        return "string"

    def _fn_starts_with(self, node: Expr) -> str:
        self._string_arg(node)
        pattern = node.args[1]
        if not isinstance(pattern, Lit) or not isinstance(pattern.value, str):
            self.fail(pattern, f"{node.fn}() takes a quoted string to look for, got {brief(pattern)}")
        return "bool"

    _fn_contains = _fn_starts_with

