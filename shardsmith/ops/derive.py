"""derive: a column computed by an expression of the language that ``filter`` uses (ir/expr.py holds
its syntax, types and rounding rules; both engines evaluate it with backends/evaluate.py)::

    {op: derive, out: dep_minutes, expr: "dep_time // 100 * 60 + dep_time % 100", dtype: int16}
    {op: derive, out: late, expr: "arr_delay > 15"}
    {op: derive, out: hour, expr: "hour(ts)"}

The column's dtype follows the expression's kind (bool, int64, float64, string, date, timestamp),
or ``dtype`` converts it (to an integer half to even, values out of range becoming null). ``out``
may name an existing column, which is then replaced in place. The role is ``continuous`` for a
float result and ``other`` otherwise (``roles`` in the config sets any other).

>>> from shardsmith.ir import Column, Schema
>>> op = Derive(out="y", expr="x * 2 + 1")
>>> op.infer(Schema((Column("x", "int8"),))).names, op.infer(Schema((Column("x", "int8"),)))["y"].dtype
(('x', 'y'), 'int64')
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.ir import DTYPES, Column, Schema, is_float
from shardsmith.ir.expr import brief, parse_expression
from shardsmith.ir.expr_types import KIND_DTYPES, infer, kind_name
from shardsmith.ops.base import Op, register_op

_CONVERTIBLE = {"int": "numeric", "float": "numeric", "bool": "numeric", "string": ("string",), "date": ("date",),
                "timestamp": ("timestamp",)}


@register_op
@dataclass(frozen=True)
class Derive(Op):
    """A column ``out`` computed by ``expr``, optionally converted to ``dtype``."""

    op_name = "derive"
    out: str = ""
    expr: str = ""
    dtype: str | None = None
    # Set at build, not by configs: the columns the expression reads that hold dates (the GPU
    # engine keeps dates as int32 days and must know which int32 columns are dates).
    date_inputs: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, entry: dict, schema: Schema, key: str) -> Derive:
        if "date_inputs" in entry:
            raise ConfigError("unknown parameter for op 'derive' (expected: out, expr, dtype)", f"{key}.date_inputs")
        op = super().from_config(entry, schema, key)
        return dataclasses.replace(op, date_inputs=tuple(c for c in op.reads() if schema[c].dtype == "date"))

    def check(self, schema: Schema, key: str) -> None:
        if not self.out or not isinstance(self.out, str):
            raise ConfigError("expected the name of the column to write", f"{key}.out")
        if self.out.startswith("__"):
            raise ConfigError(f"column names starting with '__' are reserved: {self.out}", f"{key}.out")
        if not self.expr.strip():
            raise ConfigError("expected an expression, e.g. \"I1 * 2 + I2\"", f"{key}.expr")
        kind = infer(parse_expression(self.expr, f"{key}.expr"), schema, f"{key}.expr")
        if kind == "null":
            raise ConfigError(f"the expression is always null: {brief(self.expr)}", f"{key}.expr")
        if self.dtype is not None:
            self._check_dtype(kind, key)

    def _check_dtype(self, kind: str, key: str) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}{did_you_mean(self.dtype, DTYPES)}", f"{key}.dtype")
        allowed = _CONVERTIBLE[kind]
        numeric = DTYPES[self.dtype].kind in ("int", "uint", "float", "bool") and self.dtype != "float16"
        if (allowed == "numeric" and not numeric) or (allowed != "numeric" and self.dtype not in allowed):
            raise ConfigError(f"cannot convert a {kind_name(kind)} expression to {self.dtype} "
                              "(numbers and bools convert to numeric dtypes and bool; strings, dates and "
                              "timestamps keep their dtype: use a cast step)", f"{key}.dtype")

    @functools.cached_property
    def node(self):
        return parse_expression(self.expr, "derive.expr")

    def reads(self) -> tuple[str, ...]:
        return tuple(sorted(self.node.columns()))

    def writes(self) -> tuple[str, ...]:
        return (self.out,)

    def out_dtype(self, schema: Schema) -> str:
        return self.dtype or KIND_DTYPES[infer(self.node, schema, "derive.expr")]

    def infer(self, schema: Schema) -> Schema:
        dtype = self.out_dtype(schema)
        col = Column(self.out, dtype, "continuous" if is_float(dtype) else "other")
        return schema.replace_columns({self.out: col})

    def describe(self) -> str:
        return f"derive({self.out} = {brief(self.node, 80)}{f' as {self.dtype}' if self.dtype else ''})"
