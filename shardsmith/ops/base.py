"""Op base classes and the op registry.

An op is a small frozen dataclass: its fields are its config parameters, its docstring's first line
says what it does, :meth:`Op.infer` is its schema rule and :meth:`Op.statistics` what it fits.
How an op runs is the backends' business (``backends/<name>/``), except for elementwise ops, whose
per-row formula is given once (kernels/formula.py) and rendered for every engine.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import sys
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.ir import Column, Schema, float_result, is_numeric
from shardsmith.kernels import formula

_REGISTRY: dict[str, type[Op]] = {}
_ENTRY_POINTS_LOADED = False
_ENTRY_POINT_FAILURES: dict[str, str] = {}  # entry point name -> why it did not load
ENTRY_POINT_GROUP = "shardsmith.ops"


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator: make ``cls`` available to configs as ``{op: <cls.op_name>}``."""
    if not cls.op_name:
        raise TypeError(f"{cls.__name__} needs an op_name")
    _REGISTRY[cls.op_name] = cls
    return cls


def registered_ops() -> dict[str, type[Op]]:
    _load_entry_points()
    return dict(_REGISTRY)


def get_op(name: str, key: str) -> type[Op]:
    if name in _REGISTRY:  # entry points only add names (_load_entry_points): a known one needs no scan
        return _REGISTRY[name]
    ops = registered_ops()
    if name not in ops:
        failed = "".join(f"; the installed op plugin '{ep}' failed to load: {why}"
                         for ep, why in _ENTRY_POINT_FAILURES.items())
        raise ConfigError(f"unknown op '{name}'{did_you_mean(name, ops)}{failed}", key)
    return ops[name]


def entry_points(group: str):
    """The installed packages' entry points in ``group``."""
    from importlib import metadata  # lazy: scanning the installed packages is for ops not built in

    return metadata.entry_points(group=group)


def _load_entry_points() -> None:
    """Ops that installed packages register under the ``shardsmith.ops`` entry point group."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin package: named when an op is not found, not a traceback
            _ENTRY_POINT_FAILURES[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            continue
        if isinstance(loaded, type) and issubclass(loaded, Op) and loaded.op_name not in _REGISTRY:
            register_op(loaded)


@dataclass(frozen=True)
class Op:
    """Base of every op. Subclasses are frozen dataclasses whose fields are the op's parameters."""

    op_name: ClassVar[str] = ""
    is_row_op: ClassVar[bool] = False  # changes which rows exist (filter)
    cols: tuple[str, ...] = ()

    # --- construction from a config entry -------------------------------------------------------
    @classmethod
    def from_config(cls, entry: dict, schema: Schema, key: str) -> Op:
        params = {k: v for k, v in entry.items() if k != "op"}
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in params:
            if name not in fields:
                raise ConfigError(
                    f"unknown parameter for op '{cls.op_name}'{did_you_mean(name, fields)} "
                    f"(expected: {', '.join(fields)})", f"{key}.{name}")
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in params:
                raise ConfigError(f"op '{cls.op_name}' needs this parameter", f"{key}.{name}")
        if "cols" in params:
            params["cols"] = resolve_columns(params["cols"], schema, f"{key}.cols")
        kwargs = {name: _coerce(value, hints[name], f"{key}.{name}") for name, value in params.items()}
        op = cls(**kwargs)
        op.check(schema, key)
        return op

    def check(self, schema: Schema, key: str) -> None:
        """Semantic checks of the parameters against the input schema; errors name ``key``."""
        for c in self.reads():
            schema.require(c, f"{key}.cols")

    # --- schema rule and dependencies -------------------------------------------------------------
    def reads(self) -> tuple[str, ...]:
        return tuple(self.cols)

    def writes(self) -> tuple[str, ...]:
        return ()

    def infer(self, schema: Schema) -> Schema:
        """The schema after this op, given the schema before it."""
        return schema

    def depends_on(self) -> dict[str, tuple]:
        """Which inputs each column this op writes is computed from (column-level lineage):
        ``{output: (input, ...)}``, where an input is the name of a column of the frame before this
        op, or ``(table, column)`` for a column of a side table. The default: every column read
        feeds every column written. Lineage (the manifest's, ``shardsmith lineage``, OpenLineage)
        and fit signatures use only this method, so an op that maps columns more precisely says so
        here. Rows an op removes are row-level lineage (``is_row_op`` and ``reads``), not this.

        >>> Op(cols=("a", "b")).depends_on()
        {}
        """
        reads = tuple(self.reads())
        return {w: reads for w in self.writes()}

    def parameters(self) -> dict:
        """The op's parameters as JSON values (tuples as lists): what lineage and fit signatures
        record of a step.

        >>> Op(cols=("a",)).parameters()
        {'cols': ['a']}
        """
        return {f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    # --- fitting --------------------------------------------------------------------------------
    def statistics(self, schema: Schema) -> tuple:
        """The statistics (ops/stats.py) this op needs, over its input; empty for unfitted ops."""
        return ()

    def fit(self, results: dict) -> dict:
        """Turn finalized statistics (keyed by Stat) into this op's JSON-able state."""
        return {}

    @property
    def fitted(self) -> bool:
        """Whether this op has state to fit; ops whose fitting depends on a parameter override it."""
        return False

    def fitted_schema(self, schema: Schema, state: dict) -> Schema:
        """The schema after this op once its state is known (cardinalities of fitted encoders)."""
        return schema

    def side_table(self):
        """The side table (ir ``SideTable``) this op reads whole, or None (``join`` has one)."""
        return None

    def describe(self) -> str:
        """A one-line rendering for ``shardsmith plan``."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == f.default or f.name == "cols":
                continue
            parts.append(f"{f.name}={_short(value)}")
        cols = _short(self.cols)
        return f"{self.op_name}({cols}{', ' if parts else ''}{', '.join(parts)})"


@dataclass(frozen=True)
class ColumnwiseOp(Op):
    """An op applied to each of ``cols`` independently, writing ``out`` (default: in place)."""

    out: tuple[str, ...] | None = None

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if not self.cols:
            raise ConfigError("expected at least one column", f"{key}.cols")
        if self.out is not None and len(self.out) != len(self.cols):
            raise ConfigError(f"expected {len(self.cols)} names, one per column, got {len(self.out)}", f"{key}.out")
        for col, out in self.pairs():
            check_new_column(out, col, schema, self.outputs(), f"{key}.out")

    def outputs(self) -> tuple[str, ...]:
        return tuple(self.out) if self.out is not None else tuple(self.cols)

    def writes(self) -> tuple[str, ...]:
        return self.outputs()

    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.cols, self.outputs()))

    def depends_on(self) -> dict[str, tuple]:
        """Each output from its own column: ``{out: (col,)}``."""
        return {o: (c,) for c, o in self.pairs()}

    def output_column(self, col: Column, name: str) -> Column:
        return dataclasses.replace(col, name=name)

    def infer(self, schema: Schema) -> Schema:
        return schema.replace_columns({o: self.output_column(schema[c], o) for c, o in self.pairs()})


@dataclass(frozen=True)
class ElementwiseOp(ColumnwiseOp):
    """A per-value formula over numeric columns, fusable with its neighbours into one kernel.

    Values are computed in float64 with missing (null, NaN or +-inf) as NaN, then rounded to the
    op's output dtype, an infinite result becoming NaN; missing results are written as null. An op
    states its meaning once, in ``formula`` (kernels/formula.py), from which ``apply`` (NumPy, the
    reference), ``cuda`` (the GPU's generated kernels) and the CPU's compiled kernels are all
    rendered. An op without a formula
    (a user's op from before formulas) defines ``apply`` and ``cuda`` itself: ``apply`` gets a 2-D
    block ``x`` of shape (rows, columns) and per-column parameters of shape (columns,); ``cuda``
    renders the C expression over ``x`` and parameter names. Such ops run on the NumPy path.
    """

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        for c in self.cols:
            if not is_numeric(schema[c].dtype):
                raise ConfigError(f"column '{c}' is {schema[c].dtype}; op '{self.op_name}' needs a numeric column",
                                  f"{key}.cols")

    def out_dtype(self, dtype: str) -> str:
        return float_result(dtype)

    def output_column(self, col: Column, name: str) -> Column:
        return Column(name, self.out_dtype(col.dtype), "continuous")

    def params(self, state: dict, col: str) -> dict[str, float]:
        """Per-column numeric parameters (constants and fitted values) for ``apply`` / ``cuda``."""
        return {}

    def signature(self) -> tuple:
        """What must be equal for two columns' chains to share one kernel."""
        return (self.op_name,)

    def keeps_values(self, in_dtype: str, out_dtype: str, params: dict) -> bool:
        """True when every result is an input value or a parameter that ``out_dtype`` holds exactly,
        so rounding to ``out_dtype`` after this op can be skipped (an optimisation only)."""
        return False

    def formula(self, x, p):
        """The op's meaning as an expression of ``x`` and ``p[name]`` (kernels/formula.py); None
        for an op that defines ``apply`` and ``cuda`` instead."""
        return None

    def apply(self, x, p: dict, xp):
        return formula.evaluate(self._formula("apply"), x, p, xp)

    def cuda(self, x: str, p: dict[str, str]) -> str:
        return formula.to_cuda(self._formula("cuda"), x, p)

    def compiles(self) -> bool:
        """Whether the CPU's compiled kernels may run this op: its formula is its whole meaning
        (an op that overrides ``apply`` keeps its own reference, and runs on the NumPy path)."""
        return type(self).apply is ElementwiseOp.apply and self.formula(formula.VALUE, formula.PARAMS) is not None

    def _formula(self, what: str):
        expr = self.formula(formula.VALUE, formula.PARAMS)
        if expr is None:
            raise NotImplementedError(f"op '{self.op_name}' defines neither formula() nor {what}()")
        return expr


def check_new_column(name: str, source: str | None, schema: Schema, outputs, key: str) -> None:
    """An output column is its own input column (in place) or a new name, written once by the op:
    never another existing column, which would be replaced without a word."""
    if not name or name.startswith("__"):
        raise ConfigError(f"expected a column name (not empty, not starting with '__'), got {name!r}", key)
    if list(outputs).count(name) > 1:
        raise ConfigError(f"the output column '{name}' is named more than once", key)
    if name != source and name in schema:
        raise ConfigError(f"the output column '{name}' already exists: give a new name", key)


def resolve_columns(value, schema: Schema, key: str) -> tuple[str, ...]:
    """Expand a column list whose entries may be fnmatch patterns (``I*``) against ``schema``."""
    if value is not None and not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"expected a list of column names, got {value!r}", key)
    items = [value] if isinstance(value, str) else list(value or [])
    out: list[str] = []
    visible = [n for n in schema.names if not n.startswith("__")]
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"expected column names, got {item!r}", key)
        if any(ch in item for ch in "*?["):
            matched = [n for n in visible if fnmatch.fnmatchcase(n, item)]
            if not matched:
                raise ConfigError(f"pattern '{item}' matches no column of the input schema", key)
            out.extend(m for m in matched if m not in out)
        else:
            schema.require(item, key)
            if item not in out:
                out.append(item)
    return tuple(out)


def _coerce(value: Any, hint, key: str):
    """Check ``value`` against a field's type hint; lists become tuples. Errors name ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(errors[0] if errors else f"unexpected value {value!r}", key)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", key)
        k_hint, v_hint = args if args else (Any, Any)
        return {_coerce(k, k_hint, key): _coerce(v, v_hint, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, hint, key)


_SCALARS = {bool: ("true or false", (bool,)), int: ("an integer", (int,)), float: ("a number", (int, float)),
            str: ("a string", (str,))}


# Integer parameters are stored as int64 or, for hash seeds, uint64: nothing outside both ranges.
INT_RANGE = (-(2**63), 2**64 - 1)
INT64_MAX = 2**63 - 1


def _coerce_scalar(value, hint, key: str):
    if hint not in _SCALARS:
        return value
    what, types = _SCALARS[hint]
    if not isinstance(value, types) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(f"expected {what}, got {value!r}", key)
    if hint is int and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ConfigError(f"expected an integer of at most 64 bits, got {value}", key)
    if hint is float:
        number = float(value) if abs(value) <= sys.float_info.max else math.inf
        if not math.isfinite(number):
            raise ConfigError(f"expected a finite number, got {value!r}", key)
        return number
    return value


def _json_value(value):
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def _short(value) -> str:
    if isinstance(value, tuple):
        if len(value) > 6:
            return "[" + ", ".join(map(str, value[:3])) + f", ... {len(value)} in all]"
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else str(value)
