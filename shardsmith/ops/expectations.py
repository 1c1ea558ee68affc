"""Expectations: what the data must satisfy, checked during the compile's own passes over the data
(no extra read), and what happens when it does not (``severity``).

A config lists them under ``expect:``::

    expect:
      - {col: "I*", check: max_null_fraction, max: 0.3, at: input, severity: warn}
      - {col: I1, check: between, min: 0, at: input, severity: quarantine}
      - {col: label, check: in_set, values: [0, 1]}
      - {check: expr, expr: "I2 <= I3 or is_null(I2)", at: input, severity: warn}
      - {col: C1, check: distinct_count, min: 2, max: 100000, at: input}
      - {col: I5, check: mean_between, min: -0.1, max: 0.1, split: train}
      - {check: row_count, min: 1000}
      - {check: split_fractions, tolerance: 0.01}

What each check means (every engine computes the same counts; sums are exact):

* Row checks count the offending rows. ``not_null``: the value is missing (null or NaN).
  ``between`` (``min`` and/or ``max``, inclusive): a present value outside the range. ``in_set``
  (``values``): a present value not among them. ``expr``: a row where the predicate (the ``filter``
  language, ir/expr.py) is false; a missing result does not offend (SQL CHECK semantics). A row
  check passes when no row offends.
* Aggregate checks. ``max_null_fraction`` (``max``): missing values / rows. ``mean_between``
  (``min``/``max``): the exact mean of the present, finite values (no value: broken).
  ``distinct_count`` (``min``/``max``): distinct present values (NaN is missing; -0.0 equals 0.0).
  ``unique``: no present value occurs twice (missing values may repeat, as SQL UNIQUE allows).
* Dataset checks. ``row_count`` (``min``/``max``): the output rows (of ``split`` when given).
  ``split_fractions`` (``tolerance``): every split's share of the output within ``tolerance`` of
  its configured fraction.

``at``: ``output`` (default) checks the rows and columns written to the shards (output names,
after every step, before the split); ``input`` checks the source columns of every input row as
read, before any step (filters included: a filter is then not pushed into the reader, so that
every row is seen). ``split`` restricts a column check to that split's rows.

``severity``: ``fail`` (default) stops the compile before its commit, with one line per broken
expectation and exit code 3, and leaves no dataset; ``warn`` records it (manifest ``quality``,
the log, the report); ``quarantine`` (row checks only) sends each offending row to the quarantine
with the check as its reason (rows in = out + filtered + quarantined still holds); input rows sent
there are also left out of the fitted statistics.

>>> from shardsmith.ir import Column, Schema
>>> s = Schema((Column("I1", "float32"), Column("C1", "string")))
>>> [str(e.failing()) for e in parse_expectations([{"col": "I*", "check": "between", "min": 0}], s, s, ("train",))]
['(I1 < 0)']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.ir import Schema, is_numeric
from shardsmith.ir.expr import Col, Expr, Lit, Node, parse_predicate
from shardsmith.ir.expr_types import check_predicate
from shardsmith.ops.base import resolve_columns

ROW_CHECKS = ("not_null", "between", "in_set", "expr")
AGGREGATE_CHECKS = ("unique", "max_null_fraction", "distinct_count", "mean_between")
DATASET_CHECKS = ("row_count", "split_fractions")
CHECKS = ROW_CHECKS + AGGREGATE_CHECKS + DATASET_CHECKS
SEVERITIES = ("fail", "warn", "quarantine")
STAGES = ("input", "output")
KEYS = ("check", "col", "severity", "at", "split", "min", "max", "values", "expr", "tolerance")
# The parameters each check takes, besides check, col, severity, at and split.
PARAMS = {"not_null": (), "between": ("min", "max"), "in_set": ("values",), "expr": ("expr",), "unique": (),
          "max_null_fraction": ("max",), "distinct_count": ("min", "max"), "mean_between": ("min", "max"),
          "row_count": ("min", "max"), "split_fractions": ("tolerance",)}


@dataclass(frozen=True)
class Expectation:
    """One check of one column (a pattern in the config becomes one per column)."""

    key: str  # expect[2], or expect[2].I1 for a pattern's column
    check: str
    col: str | None = None
    severity: str = "fail"
    at: str = "output"
    split: str | None = None
    min: float | None = None
    max: float | None = None
    values: tuple = ()
    expr: str | None = None
    tolerance: float | None = None
    split_index: int | None = None  # the position of ``split`` among the split names
    predicate: Node | None = field(default=None, compare=False)  # parsed ``expr``

    @property
    def kind(self) -> str:
        """``row``, ``aggregate`` or ``dataset``."""
        return "row" if self.check in ROW_CHECKS else "aggregate" if self.check in AGGREGATE_CHECKS else "dataset"

    @property
    def distinct(self) -> bool:
        """Whether this check needs the distinct values of its column (exact: runtime/quality.py)."""
        return self.check in ("unique", "distinct_count")

    def failing(self) -> Node:
        """A predicate that is true exactly on the rows this row check counts against."""
        c = Col(self.col) if self.col is not None else None
        if self.check == "not_null":
            return Expr("is_null", (c,))
        if self.check == "between":
            terms = [Expr(fn, (c, Lit(v))) for fn, v in (("lt", self.min), ("gt", self.max)) if v is not None]
            return terms[0] if len(terms) == 1 else Expr("or", tuple(terms))
        if self.check == "in_set":
            return Expr("not", (Expr("is_in", (c, self.values)),))
        if self.check == "expr":
            return Expr("not", (self.predicate,))
        raise ValueError(f"{self.check} is not a row check")

    def columns(self) -> set[str]:
        if self.check == "expr":
            return self.predicate.columns()
        return {self.col} if self.col is not None else set()

    def describe(self) -> str:
        """The check in words, as reports and errors print it."""
        bounds = _range(self.min, self.max)
        what = {"between": f"between {bounds}", "in_set": f"in {list(self.values)}", "expr": f"expr {self.expr!r}",
                "max_null_fraction": f"max_null_fraction <= {_num(self.max)}",
                "distinct_count": f"distinct_count in {bounds}", "mean_between": f"mean in {bounds}",
                "row_count": f"row_count in {bounds}",
                "split_fractions": f"split_fractions within {_num(self.tolerance)}"}.get(self.check, self.check)
        where = f" ({self.at}{', ' + self.split if self.split else ''})" if self.kind != "dataset" else \
            (f" ({self.split})" if self.split else "")
        return f"{self.col + ' ' if self.col else ''}{what}{where}"


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range(lo, hi) -> str:
    return f"[{'-inf' if lo is None else _num(lo)}, {'inf' if hi is None else _num(hi)}]"


def parse_expectations(entries: list, input_schema: Schema, output_schema: Schema,
                       split_names: tuple[str, ...]) -> tuple[Expectation, ...]:
    """The ``expect:`` entries as checks, validated against the schema each one reads; errors
    name the entry's key (``expect[2].max``)."""
    out: list[Expectation] = []
    for i, entry in enumerate(entries or []):
        key = f"expect[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError("expected a mapping, e.g. {col: I1, check: not_null}", key)
        base = _base(entry, key, split_names)
        schema = input_schema if base.at == "input" else output_schema
        if base.check == "expr":
            out.append(_with_expr(base, entry, schema, key))
        elif base.kind == "dataset":
            out.append(base)
        else:
            if entry.get("col") is None:
                raise ConfigError(f"check '{base.check}' needs a column", f"{key}.col")
            cols = resolve_columns(entry["col"], schema, f"{key}.col")
            for c in cols:
                out.append(_checked(replace(base, col=c, key=key if len(cols) == 1 else f"{key}.{c}"), schema, key))
    return tuple(out)


def _base(entry: dict, key: str, split_names) -> Expectation:
    for k in entry:
        if k not in KEYS:
            raise ConfigError(f"unknown key{did_you_mean(k, KEYS)} (expected: {', '.join(KEYS)})", f"{key}.{k}")
    check = entry.get("check")
    if check not in CHECKS:
        raise ConfigError(f"expected one of {', '.join(CHECKS)}, got {check!r}{did_you_mean(check, CHECKS)}",
                          f"{key}.check")
    for k in ("min", "max", "values", "expr", "tolerance"):
        if k in entry and entry[k] is not None and k not in PARAMS[check]:
            raise ConfigError(f"check '{check}' takes no {k} (it takes: {', '.join(PARAMS[check]) or 'nothing'})",
                              f"{key}.{k}")
    severity, at, split = entry.get("severity", "fail"), entry.get("at", "output"), entry.get("split")
    _choice(severity, SEVERITIES, f"{key}.severity")
    _choice(at, STAGES, f"{key}.at")
    if split is not None:
        _choice(split, split_names, f"{key}.split")
    if severity == "quarantine" and check not in ROW_CHECKS:
        raise ConfigError(f"quarantine takes rows out, one by one: only a row check ({', '.join(ROW_CHECKS)}) "
                          f"can quarantine, not '{check}'", f"{key}.severity")
    if severity == "quarantine" and split is not None:
        raise ConfigError("a quarantine check applies to every row: drop split", f"{key}.split")
    if check in DATASET_CHECKS and entry.get("col") is not None:
        raise ConfigError(f"check '{check}' is about the whole dataset: drop col", f"{key}.col")
    exp = Expectation(key, check, severity=severity, at=at, split=split,
                      split_index=tuple(split_names).index(split) if split is not None else None,
                      min=_number(entry, "min", key), max=_number(entry, "max", key),
                      values=tuple(entry.get("values") or ()), expr=entry.get("expr"),
                      tolerance=_number(entry, "tolerance", key))
    _check_params(exp, key)
    return exp


def _choice(value, choices, key: str) -> None:
    if value not in choices:
        raise ConfigError(f"expected one of {', '.join(choices)}, got {value!r}{did_you_mean(value, choices)}", key)


def _number(entry: dict, name: str, key: str) -> float | None:
    v = entry.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ConfigError(f"expected a number, got {v!r}", f"{key}.{name}")
    return v


def _check_params(e: Expectation, key: str) -> None:
    if e.check in ("between", "mean_between", "distinct_count", "row_count") and e.min is None and e.max is None:
        raise ConfigError(f"check '{e.check}' needs min, max or both", f"{key}.min")
    if e.min is not None and e.max is not None and e.min > e.max:
        raise ConfigError(f"min {e.min} is above max {e.max}", f"{key}.min")
    if e.check == "max_null_fraction" and (e.max is None or not 0 <= e.max <= 1):
        raise ConfigError(f"expected a fraction in [0, 1], got {e.max!r}", f"{key}.max")
    if e.check in ("distinct_count", "row_count") and any(v is not None and v < 0 for v in (e.min, e.max)):
        raise ConfigError("expected counts >= 0", f"{key}.min")
    if e.check == "split_fractions" and (e.tolerance is None or not 0 <= e.tolerance < 1):
        raise ConfigError(f"expected a tolerance in [0, 1), got {e.tolerance!r}", f"{key}.tolerance")
    if e.check == "in_set" and not e.values:
        raise ConfigError("expected a non-empty list of values", f"{key}.values")


def _with_expr(e: Expectation, entry: dict, schema: Schema, key: str) -> Expectation:
    text = entry.get("expr")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("expected a predicate, e.g. \"I1 <= I2 or is_null(I2)\"", f"{key}.expr")
    if entry.get("col") is not None:
        raise ConfigError("an expr check names its columns in expr: drop col", f"{key}.col")
    pred = parse_predicate(text, f"{key}.expr")
    kind = check_predicate(pred, schema, f"{key}.expr")
    if kind != "bool":
        raise ConfigError(f"the expression must be true/false, got a {kind}: {text!r}", f"{key}.expr")
    return replace(e, predicate=pred)


def _checked(e: Expectation, schema: Schema, key: str) -> Expectation:
    """Type checks of a column check against its stage's schema."""
    dtype = schema[e.col].dtype
    if e.check in ("between", "mean_between") and not is_numeric(dtype):
        raise ConfigError(f"column '{e.col}' is {dtype}; check '{e.check}' needs a numeric column", f"{key}.col")
    if e.check in ROW_CHECKS:
        check_predicate(e.failing(), schema, f"{key}.values" if e.check == "in_set" else f"{key}.col")
    return e


def expectation_json(e: Expectation) -> dict[str, Any]:
    """What the manifest records of a check's definition."""
    out = {"key": e.key, "check": e.check, "severity": e.severity, "description": e.describe()}
    if e.kind != "dataset":
        out["at"] = e.at
    for k in ("col", "split", "min", "max", "expr", "tolerance"):
        if getattr(e, k) is not None:
            out[k] = getattr(e, k)
    if e.values:
        out["values"] = list(e.values)
    return out
