"""Row and column ops: filter, rename, drop. The predicate language of filter lives in the IR
(``shardsmith/ir/expr.py``), where passes and backends read it too."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from shardsmith.errors import ConfigError
from shardsmith.ir import Column, Schema
from shardsmith.ir.expr import brief, parse_predicate
from shardsmith.ir.expr_types import check_predicate, kind_name
from shardsmith.ops.base import Op, register_op


@register_op
@dataclass(frozen=True)
class Filter(Op):
    """Keep the rows where ``expr`` is true (see the predicate language above)."""

    op_name = "filter"
    is_row_op = True
    expr: str = ""

    def check(self, schema: Schema, key: str) -> None:
        if not self.expr.strip():
            raise ConfigError("expected a predicate, e.g. \"I1 >= 0\"", f"{key}.expr")
        kind = check_predicate(parse_predicate(self.expr, f"{key}.expr"), schema, f"{key}.expr")
        if kind != "bool":
            raise ConfigError(f"the predicate must be true/false, got a {kind_name(kind)}: {brief(self.expr)}",
                              f"{key}.expr")

    @functools.cached_property
    def predicate(self):
        return parse_predicate(self.expr, "filter.expr")

    def reads(self) -> tuple[str, ...]:
        return tuple(sorted(self.predicate.columns()))

    def describe(self) -> str:
        return f"filter({self.predicate})"


@register_op
@dataclass(frozen=True)
class Rename(Op):
    """Rename columns: ``mapping: {old: new}``."""

    op_name = "rename"
    mapping: dict[str, str] | None = None

    def check(self, schema: Schema, key: str) -> None:
        if not self.mapping:
            raise ConfigError("expected a mapping of old to new names", f"{key}.mapping")
        names = set(schema.names)
        targets = list(self.mapping.values())
        for old, new in self.mapping.items():
            schema.require(old, f"{key}.mapping")
            if new in names and new not in self.mapping:
                raise ConfigError(f"'{new}' already exists", f"{key}.mapping.{old}")
            if targets.count(new) > 1:
                raise ConfigError(f"'{new}' is the new name of more than one column", f"{key}.mapping.{old}")
            if not new or new.startswith("__"):
                raise ConfigError(f"expected a column name (not empty, not starting with '__'), got {new!r}",
                                  f"{key}.mapping.{old}")

    def reads(self) -> tuple[str, ...]:
        return tuple(self.mapping)

    def writes(self) -> tuple[str, ...]:
        return tuple(self.mapping.values())

    def depends_on(self) -> dict[str, tuple]:
        return {new: (old,) for old, new in self.mapping.items()}

    def infer(self, schema: Schema) -> Schema:
        m = self.mapping
        return Schema(tuple(Column(m.get(c.name, c.name), c.dtype, c.role, c.cardinality) for c in schema.columns))

    def describe(self) -> str:
        return "rename(" + ", ".join(f"{a}->{b}" for a, b in self.mapping.items()) + ")"

    def __hash__(self):
        return hash((self.op_name, tuple(sorted(self.mapping.items()))))


@register_op
@dataclass(frozen=True)
class Drop(Op):
    """Remove columns from the output."""

    op_name = "drop"

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if not self.cols:
            raise ConfigError("expected at least one column", f"{key}.cols")

    def infer(self, schema: Schema) -> Schema:
        return schema.drop(self.cols)
