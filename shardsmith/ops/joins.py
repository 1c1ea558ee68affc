"""join: columns of a side table (``tables:`` in the config) brought to each row by key::

    tables: {users: {paths: [data/users.parquet]}}
    graph:
      - {op: join, table: users, on: [user_id], cols: [age, country], prefix: "user_"}
      - {op: join, table: items, on: {item: item_id}, how: inner}

Meaning, on every engine:

* ``on``: key columns with the same name on both sides (``[k1, k2]``), or ``{left: right}``. Keys
  match by value in their canonical form: integers of any width as int64, dates as days,
  timestamps as microseconds (whatever the stored unit), strings and binary by their bytes, bools;
  float keys are refused (cast them first). Each left key must have the kind of its right key.
* The side table must have one row per key: a duplicate key fails the compile naming a key value,
  unless ``on_duplicate: first`` keeps the first row of each key (in file order). Side rows with a
  null key are left out; a null left key matches nothing.
* ``how: left`` (default) keeps every row, the brought columns null where no side row matches;
  ``how: inner`` drops the rows without a match (counted as filtered by this step in the
  manifest's ``filtered_by``). Rows keep their input order either way.
* ``cols``: the side columns to bring (default: every non-key column), named ``prefix + column``;
  a name that already exists is an error.
* The side table is read whole by the runtime and sent to every worker: the columns used must fit
  in ``tables.NAME.max_bytes`` of memory (default 1GB), or the compile stops saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.ir import Column, Schema, SideTable
from shardsmith.ir.expr_types import column_kind
from shardsmith.kernels.xxhash64 import timestamp_micros
from shardsmith.ops.base import Op, register_op
from shardsmith.ops.stats import KEY  # key columns of per-key state: __key0, __key1, ... (canonical)

HOW = ("left", "inner")
ON_DUPLICATE = ("error", "first")


@register_op
@dataclass(frozen=True)
class Join(Op):
    """Bring columns of the side table ``table`` to each row whose ``on`` keys match."""

    op_name = "join"
    uses_tables = True  # compiler/build.py passes the scanned side tables to from_config
    table: str = ""
    on: Any = None  # [k1, k2] or {left: right} in a config; (left, right) pairs once built
    how: str = "left"
    prefix: str = ""
    on_duplicate: str = "error"
    side: SideTable | None = None  # set at build from `tables:`, not by configs

    @classmethod
    def from_config(cls, entry: dict, schema: Schema, key: str, tables: dict | None = None) -> Join:
        fields = ("table", "on", "how", "cols", "prefix", "on_duplicate")
        for name in entry:
            if name != "op" and name not in fields:
                raise ConfigError(f"unknown parameter for op 'join'{did_you_mean(name, fields)} "
                                  f"(expected: {', '.join(fields)})", f"{key}.{name}")
        tables = tables or {}
        name = entry.get("table")
        if not isinstance(name, str) or not name:
            raise ConfigError("expected the name of a table declared under tables:", f"{key}.table")
        if name not in tables:
            known = f" (declared: {', '.join(tables)})" if tables else " (declare it under tables:)"
            raise ConfigError(f"unknown table '{name}'{did_you_mean(name, tables)}{known}", f"{key}.table")
        side = tables[name]
        on = _pairs(entry.get("on"), f"{key}.on")
        for param in ("how", "prefix", "on_duplicate"):
            if param in entry and not isinstance(entry[param], str):
                raise ConfigError(f"expected a string, got {entry[param]!r}", f"{key}.{param}")
        cols = entry.get("cols")
        if cols is None:
            cols = [c for c in side.schema.names if c not in {r for _, r in on}]
        elif isinstance(cols, str) or not all(isinstance(c, str) for c in cols):
            raise ConfigError(f"expected a list of column names of table '{name}', got {cols!r}", f"{key}.cols")
        op = cls(cols=tuple(cols), table=name, on=on, how=entry.get("how", "left"), prefix=entry.get("prefix", ""),
                 on_duplicate=entry.get("on_duplicate", "error"), side=side)
        op.check(schema, key)
        return op

    def check(self, schema: Schema, key: str) -> None:
        if self.how not in HOW:
            raise ConfigError(f"expected one of {', '.join(HOW)}, got {self.how!r}", f"{key}.how")
        if self.on_duplicate not in ON_DUPLICATE:
            raise ConfigError(f"expected one of {', '.join(ON_DUPLICATE)}, got {self.on_duplicate!r}",
                              f"{key}.on_duplicate")
        side = self.side.schema
        for left, right in self.on:
            lk = column_kind(schema.require(left, f"{key}.on").dtype)
            if right not in side:
                raise ConfigError(f"column '{right}' is not in table '{self.table}'{did_you_mean(right, side.names)}",
                                  f"{key}.on")
            rk = column_kind(side[right].dtype)
            for name, kind, dtype, where in ((left, lk, schema[left].dtype, ""),
                                             (right, rk, side[right].dtype, f" in table '{self.table}'")):
                if kind in ("float", None):
                    raise ConfigError(f"key '{name}' is {dtype}{where}: join keys are integers, strings, bools, dates "
                                      "or timestamps (cast it first)", f"{key}.on")
            if lk != rk:
                raise ConfigError(f"key '{left}' is {schema[left].dtype} here but '{right}' is {side[right].dtype} in "
                                  f"table '{self.table}': the kinds must match (cast one side first)", f"{key}.on")
        for c in self.cols:
            if c not in side:
                raise ConfigError(f"column '{c}' is not in table '{self.table}'{did_you_mean(c, side.names)}",
                                  f"{key}.cols")
            out = self.prefix + c
            if out in schema or out.startswith("__"):
                raise ConfigError(f"column '{out}' already exists: set a prefix (prefix: '{self.table}_') or leave it "
                                  "out of cols", f"{key}.cols")

    @property
    def is_row_op(self) -> bool:
        return self.how == "inner"

    def side_table(self) -> SideTable:
        return self.side

    def left_keys(self) -> tuple[str, ...]:
        return tuple(left for left, _ in self.on)

    def right_keys(self) -> tuple[str, ...]:
        return tuple(right for _, right in self.on)

    def outputs(self) -> tuple[str, ...]:
        return tuple(self.prefix + c for c in self.cols)

    def side_columns(self) -> list[str]:
        """The side table's columns this join reads: its keys, then the columns it brings."""
        return list(dict.fromkeys([*self.right_keys(), *self.cols]))

    def side_state(self, table: pa.Table) -> dict:
        """The state the lowerings get: the side table as read (``side_columns``) turned into the
        keys in canonical form (``key0``, ``key1``, ...) and the columns brought, as they are."""
        keys = {f"{KEY}{i}": canonical_key(table[r]) for i, r in enumerate(self.right_keys())}
        return {"table": pa.table({**keys, **{c: table[c] for c in self.cols}})}

    def reads(self) -> tuple[str, ...]:
        return self.left_keys()

    def writes(self) -> tuple[str, ...]:
        return self.outputs()

    def depends_on(self) -> dict[str, tuple]:
        """Each column brought from the row its keys match: the left keys, the side table's keys
        and that column of the side table.

        >>> Join(table="users", on=(("uid", "id"),), cols=("age",), prefix="u_").depends_on()
        {'u_age': ('uid', ('users', 'id'), ('users', 'age'))}
        """
        keys = (*self.left_keys(), *((self.table, r) for r in self.right_keys()))
        return {self.prefix + c: (*keys, (self.table, c)) for c in self.cols}

    def infer(self, schema: Schema) -> Schema:
        side = self.side.schema
        return schema.replace_columns({self.prefix + c: Column(self.prefix + c, side[c].dtype) for c in self.cols})

    def describe(self) -> str:
        on = ", ".join(a if a == b else f"{a}={b}" for a, b in self.on)
        return f"join({self.table} on {on}, {self.how}, brings {len(self.cols)} column(s){_prefix(self.prefix)})"


def _prefix(prefix: str) -> str:
    return f" as {prefix}*" if prefix else ""


def _pairs(on, key: str) -> tuple[tuple[str, str], ...]:
    """``on`` as (left, right) pairs: a list of shared names, or a {left: right} mapping."""
    if isinstance(on, str):
        on = [on]
    if isinstance(on, dict) and on and all(isinstance(k, str) and isinstance(v, str) for k, v in on.items()):
        return tuple(on.items())
    if isinstance(on, (list, tuple)) and on and all(isinstance(k, str) for k in on):
        if len(set(on)) != len(on):
            raise ConfigError(f"a key is listed twice: {list(on)}", key)
        return tuple((k, k) for k in on)
    raise ConfigError(f"expected key columns, [k1, k2] or {{left: right}}, got {on!r}", key)


# --- keys ----------------------------------------------------------------------------------------
def canonical_key(arr) -> pa.Array:
    """A key column in the form keys match by: integers as int64 (uint64 by its bit pattern),
    dates as int64 days, timestamps as int64 microseconds, strings and binary as binary (bytes),
    bools as they are.

    >>> canonical_key(pa.array([1, 2], pa.int8())).type, canonical_key(pa.array([1], pa.timestamp("s"))).to_pylist()
    (DataType(int64), [1000000])
    """
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    t = arr.type
    if pa.types.is_dictionary(t):
        return canonical_key(arr.dictionary_decode())
    if pa.types.is_timestamp(t):
        raw = arr.cast(pa.int64())
        micros = timestamp_micros(raw.fill_null(0).to_numpy(zero_copy_only=False), t.unit)
        return pa.array(micros, pa.int64(), mask=None if not raw.null_count else ~raw.is_valid().to_numpy(
            zero_copy_only=False))
    if pa.types.is_date(t):
        return arr.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
    if pa.types.is_uint64(t):
        return arr.view(pa.int64())
    if pa.types.is_integer(t):
        return arr.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t) or t == pa.string_view():
        return arr.cast(pa.binary())  # strings and binary keys match by their bytes
    return arr

