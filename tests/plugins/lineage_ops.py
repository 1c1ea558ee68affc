"""Ops that stand in for a join and a derived column in the lineage tests: a lookup of a side
table (a column of the table ``countries`` by a key column) and a ratio of two columns. Each says
which inputs its output depends on through ``depends_on``, as a join or derive op does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from shardsmith.backends.base import register_lowering
from shardsmith.ir import Column, Schema
from shardsmith.ops import Op, register_op

COUNTRIES = ("fr", "de", "it", "es", "nl")


@dataclass(frozen=True)
class OneOut(Op):
    """An op writing one new column ``out`` of dtype ``dtype`` and role ``role``."""

    out: str = "out"
    dtype: ClassVar[str] = "float64"
    role: ClassVar[str] = "continuous"

    def writes(self):
        return (self.out,)

    def infer(self, schema: Schema) -> Schema:
        return schema.replace_columns({self.out: Column(self.out, self.dtype, self.role)})


@register_op
@dataclass(frozen=True)
class LookupCountry(OneOut):
    """``out``: the country of ``cols[0]`` (an integer) in the side table ``countries``."""

    op_name = "lookup_country"
    dtype = "string"
    role = "categorical"

    def depends_on(self):
        return {self.out: (self.cols[0], ("countries", "code"), ("countries", "name"))}


@register_op
@dataclass(frozen=True)
class Ratio(OneOut):
    """``out`` = cols[0] / cols[1] (a derived column; the default ``depends_on``: both inputs)."""

    op_name = "ratio"


@register_lowering("cpu", LookupCountry)
def _lookup(be, step, frame, state, ctx):
    keys = frame[step.op.cols[0]].to_numpy(zero_copy_only=False)
    names = np.asarray(COUNTRIES, dtype=object)[np.nan_to_num(keys).astype(np.int64) % len(COUNTRIES)]
    return frame.append_column(step.op.out, pa.array(names, type=pa.string()))


@register_lowering("cpu", Ratio)
def _ratio(be, step, frame, state, ctx):
    a, b = (frame[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in step.op.cols)
    with np.errstate(divide="ignore", invalid="ignore"):
        return frame.append_column(step.op.out, pa.array(a / b))
