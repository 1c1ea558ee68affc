"""Lower filter predicates (ops/rows.py) to pyarrow compute expressions."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.ops.rows import Col, Expr, Lit

_BINARY = {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
           "ge": "greater_equal", "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}


def to_arrow_expression(node) -> pc.Expression:
    if isinstance(node, Col):
        return pc.field(node.name)
    if isinstance(node, Lit):
        return pc.scalar(node.value)
    args = node.args
    if node.fn in _BINARY:
        left, right = to_arrow_expression(args[0]), to_arrow_expression(args[1])
        if node.fn == "div":  # true division, as the predicate language promises
            left = left.cast("float64")
        return getattr(pc, _BINARY[node.fn])(left, right)
    if node.fn in ("and", "or"):
        out = to_arrow_expression(args[0])
        for a in args[1:]:
            out = (out & to_arrow_expression(a)) if node.fn == "and" else (out | to_arrow_expression(a))
        return out
    if node.fn == "not":
        return ~to_arrow_expression(args[0])
    if node.fn == "is_null":
        return to_arrow_expression(args[0]).is_null(nan_is_null=True)
    if node.fn == "not_null":
        return ~to_arrow_expression(args[0]).is_null(nan_is_null=True)
    if node.fn == "is_in":
        x = to_arrow_expression(args[0])  # SQL semantics: a missing value is neither in nor not in
        null = pc.scalar(pa.scalar(None, type=pa.bool_()))
        return pc.if_else(x.is_null(nan_is_null=True), null, x.isin(list(args[1])))
    raise ValueError(f"unknown predicate function {node.fn}")


__all__ = ["to_arrow_expression", "Expr"]
