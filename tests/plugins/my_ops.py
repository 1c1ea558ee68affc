"""A user's op module, registered through the `plugins:` config key in tests."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.backends.base import register_lowering
from shardsmith.ir import Column, Schema
from shardsmith.ops import ElementwiseOp, Op, register_op


@register_op
@dataclass(frozen=True)
class Square(ElementwiseOp):
    """x * x (an elementwise op: it fuses and runs wherever elementwise ops run)."""

    op_name = "square"

    def apply(self, x, p, xp):
        return x * x

    def cuda(self, x, p):
        return f"(({x}) * ({x}))"


@register_op
@dataclass(frozen=True)
class StrLen(Op):
    """The UTF-8 length of a string column, into ``out``."""

    op_name = "strlen"
    out: str = "len"

    def writes(self):
        return (self.out,)

    def infer(self, schema: Schema) -> Schema:
        return schema.replace_columns({self.out: Column(self.out, "int32", "continuous")})


@register_lowering("cpu", StrLen)
def _strlen(be, step, frame, state, ctx):
    lengths = pc.utf8_length(frame[step.op.cols[0]]).cast(pa.int32())
    return frame.append_column(step.op.out, lengths)
