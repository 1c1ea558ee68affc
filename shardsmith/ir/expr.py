"""Expression trees: the predicate language of ``filter`` (and the expressions a pass reasons
about), parsed from text (never evaluated) into small immutable nodes that each backend lowers::

    I1 >= 0 and (C1 != 'x' or is_null(C2)) and C3 in ('a', 'b') and I2 + I3 < 10

Columns are bare names, or ``col('any name')``; literals are numbers, quoted strings, true/false.
Operators: ``and or not``, ``== != < <= > >=``, ``in`` / ``not in`` with a literal tuple, and
``+ - * /``. Functions: ``is_null(c)``, ``not_null(c)``. A comparison with a missing value is
missing, and a row whose predicate is missing is filtered out (SQL semantics).

>>> str(parse_predicate("I1 >= 0 and C1 in ('a', 'b')", "filter.expr"))
"((I1 >= 0) and (C1 in ('a', 'b')))"
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.ir.dtypes import is_numeric
from shardsmith.ir.schema import Column, Schema

_CMP = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
_ARITH = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}
_FUNCS = ("is_null", "not_null")
SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
           "add": "+", "sub": "-", "mul": "*", "div": "/"}


@dataclass(frozen=True)
class Col:
    name: str

    def columns(self) -> set[str]:
        return {self.name}

    def __str__(self) -> str:
        return self.name if self.name.isidentifier() else f"col({self.name!r})"


@dataclass(frozen=True)
class Lit:
    value: Any

    def columns(self) -> set[str]:
        return set()

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Expr:
    fn: str  # and or not eq ne lt le gt ge add sub mul div is_null not_null is_in
    args: tuple

    def columns(self) -> set[str]:
        out: set[str] = set()
        for a in self.args:
            if isinstance(a, (Col, Lit, Expr)):
                out |= a.columns()
        return out

    def __str__(self) -> str:
        if self.fn in SYMBOLS:
            return f"({self.args[0]} {SYMBOLS[self.fn]} {self.args[1]})"
        if self.fn in ("and", "or"):
            return "(" + f" {self.fn} ".join(map(str, self.args)) + ")"
        if self.fn == "not":
            return f"not {self.args[0]}"
        if self.fn == "is_in":
            return f"({self.args[0]} in {tuple(self.args[1])!r})"
        return f"{self.fn}({', '.join(map(str, self.args))})"


Node = Col | Lit | Expr  # an expression tree


def parse_predicate(text: str, key: str):
    """Parse a predicate string into Col / Lit / Expr nodes; errors name ``key``."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(f"cannot parse predicate {text!r}: {exc.msg} at column {exc.offset}", key) from None
    return _convert(tree, key)


def _convert(node, key):  # noqa: C901 - one branch per syntax form is the clearest layout
    if isinstance(node, ast.BoolOp):
        return Expr("and" if isinstance(node.op, ast.And) else "or", tuple(_convert(v, key) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Expr("not", (_convert(node.operand, key),))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return Lit(-node.operand.value)
    if isinstance(node, ast.Compare):
        parts, left = [], _convert(node.left, key)
        for op, comp in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = _literal_tuple(comp, key)
                e = Expr("is_in", (left, values))
                parts.append(Expr("not", (e,)) if isinstance(op, ast.NotIn) else e)
                continue
            if type(op) not in _CMP:
                raise ConfigError(f"unsupported comparison {type(op).__name__}", key)
            right = _convert(comp, key)
            parts.append(Expr(_CMP[type(op)], (left, right)))
            left = right
        return parts[0] if len(parts) == 1 else Expr("and", tuple(parts))
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        return Expr(_ARITH[type(node.op)], (_convert(node.left, key), _convert(node.right, key)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name == "col" and len(node.args) == 1 and isinstance(node.args[0], ast.Constant):
            return Col(str(node.args[0].value))
        if name in _FUNCS and len(node.args) == 1:
            return Expr(name, (_convert(node.args[0], key),))
        raise ConfigError(f"unknown function {name}(){did_you_mean(name, (*_FUNCS, 'col'))}", key)
    if isinstance(node, ast.Name):
        if node.id in ("true", "True"):
            return Lit(True)
        if node.id in ("false", "False"):
            return Lit(False)
        return Col(node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return Lit(node.value)
    raise ConfigError(f"unsupported syntax in predicate: {ast.unparse(node)!r}", key)


def _literal_tuple(node, key) -> tuple:
    if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        raise ConfigError("'in' needs a literal list, e.g. C1 in ('a', 'b')", key)
    values = []
    for elt in node.elts:
        lit = _convert(elt, key)
        if not isinstance(lit, Lit):
            raise ConfigError("'in' needs literal values", key)
        values.append(lit.value)
    return tuple(values)


def check_predicate(expr, schema: Schema, key: str) -> str:
    """Check columns and operand types; returns the expression's kind: bool, number or string."""
    if isinstance(expr, Col):
        return _kind(schema.require(expr.name, key))
    if isinstance(expr, Lit):
        return "bool" if isinstance(expr.value, bool) else "string" if isinstance(expr.value, str) else "number"
    kinds = [check_predicate(a, schema, key) for a in expr.args if isinstance(a, (Col, Lit, Expr))]
    if expr.fn in ("and", "or", "not"):
        if any(k != "bool" for k in kinds):
            raise ConfigError(f"'{expr.fn}' needs true/false operands in {expr}", key)
        return "bool"
    if expr.fn in ("add", "sub", "mul", "div"):
        if any(k != "number" for k in kinds):
            raise ConfigError(f"arithmetic needs numeric operands in {expr}", key)
        return "number"
    if expr.fn in ("eq", "ne", "lt", "le", "gt", "ge"):
        if kinds[0] != kinds[1]:
            raise ConfigError(f"cannot compare {kinds[0]} with {kinds[1]} in {expr}", key)
    if expr.fn == "is_in":
        want = kinds[0]
        for v in expr.args[1]:
            got = "string" if isinstance(v, str) else "bool" if isinstance(v, bool) else "number"
            if got != want:
                raise ConfigError(f"cannot test a {want} column against {v!r} in {expr}", key)
    return "bool"


def _kind(col: Column) -> str:
    if col.dtype == "bool":
        return "bool"
    return "number" if is_numeric(col.dtype) else "string"
