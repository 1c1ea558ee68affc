"""The GPU engine's filter evaluator (backends/gpu/expr.py), run on NumPy arrays, against the CPU
engine's pyarrow expressions on random data and random predicates: nulls, NaN, Kleene logic, Arrow's
type promotion and integer wrap-around included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shardsmith.backends.gpu import expr as E
from shardsmith.errors import ConfigError
from shardsmith.inputs.predicate import to_arrow_expression
from shardsmith.inputs.scan import to_schema
from shardsmith.ir.expr import check_predicate, parse_predicate

_CMP = {"eq": pc.equal, "ne": pc.not_equal, "lt": pc.less, "le": pc.less_equal, "gt": pc.greater,
        "ge": pc.greater_equal}


class ArrowColumns:
    """The evaluator's adapter over a pyarrow table with NumPy arrays (the GPU adapter's twin)."""

    xp = np

    def __init__(self, table: pa.Table):
        self.table, self.num_rows = table, table.num_rows

    def column(self, name):
        arr = self.table[name].combine_chunks()
        valid = np.asarray(arr.is_valid()) if arr.null_count else None
        if pa.types.is_string(arr.type):
            return E.Text(arr)
        if pa.types.is_boolean(arr.type):
            return E.Truth(np.asarray(arr.fill_null(False)), valid)
        return E.Num(arr.fill_null(0).to_numpy(zero_copy_only=False), valid, arr.type)

    def text_is_null(self, t):
        return ~np.asarray(t.column.is_valid())

    def text_compare(self, fn, a, b):
        left = a.column if not isinstance(a.column, str) else pa.scalar(a.column)
        right = b.column if not isinstance(b.column, str) else pa.scalar(b.column)
        res = _CMP[fn](left, right)
        known = np.asarray(res.is_valid()) if isinstance(res, pa.Array) else np.full(self.num_rows, res.is_valid)
        return E.Truth(np.asarray(res.fill_null(False)), known)

    def text_is_in(self, t, values):
        return np.asarray(pc.is_in(t.column, value_set=pa.array(list(values))).fill_null(False))


def _table(rng, n=400):
    def nulls(arr_like, p=0.15):
        return rng.random(n) < p

    f32 = rng.normal(0, 3, n).astype(np.float32)
    f32[rng.random(n) < 0.1] = np.nan
    f64 = np.round(rng.normal(0, 3, n), 1)
    f64[rng.random(n) < 0.1] = np.nan
    return pa.table({
        "i8": pa.array(rng.integers(-128, 128, n).astype(np.int8), mask=nulls(n)),
        "i8b": pa.array(rng.integers(-128, 128, n).astype(np.int8)),
        "u8": pa.array(rng.integers(0, 256, n).astype(np.uint8), mask=nulls(n)),
        "i32": pa.array(rng.integers(-5, 6, n).astype(np.int32), mask=nulls(n)),
        "i64": pa.array(rng.integers(-2**62, 2**62, n), mask=nulls(n)),
        "f32": pa.array(f32, mask=nulls(n)),
        "f64": pa.array(f64, mask=nulls(n)),
        "b": pa.array(rng.random(n) < 0.5, mask=nulls(n)),
        "s": pa.array([f"v{int(k)}" for k in rng.integers(0, 6, n)], mask=nulls(n)),
    })


NUMS = ["i8", "i8b", "u8", "i32", "i64", "f32", "f64", "0", "1", "-3", "2.5", "0.1", "127"]


def _num(rng, depth=0):
    if depth < 2 and rng.random() < 0.35:
        op = rng.choice(["+", "-", "*", "/"])
        return f"({_num(rng, depth + 1)} {op} {_num(rng, depth + 1)})"
    return str(rng.choice(NUMS))


def _pred(rng, depth=0):
    r = rng.random()
    if depth < 3 and r < 0.3:
        joiner = rng.choice([" and ", " or "])
        return "(" + joiner.join(_pred(rng, depth + 1) for _ in range(int(rng.integers(2, 4)))) + ")"
    if depth < 3 and r < 0.38:
        return f"not {_pred(rng, depth + 1)}"
    kind = rng.integers(0, 7)
    if kind == 0:
        return f"is_null({rng.choice(['i8', 'f32', 'f64', 's', 'b', 'i64'])})"
    if kind == 1:
        return f"not_null({rng.choice(['f32', 's', 'u8'])})"
    if kind == 2:
        return f"s {rng.choice(['==', '!=', '<', '>=']) } 'v{int(rng.integers(0, 6))}'"
    if kind == 3:
        values = ", ".join(str(v) for v in rng.choice(["1", "2", "-3", "0.1", "2.5", "0", "127"], 3))
        return f"{rng.choice(['i8', 'i32', 'f32', 'f64', 'u8'])} {rng.choice(['in', 'not in'])} ({values})"
    if kind == 4:
        return "s in ('v1', 'v3')"
    if kind == 5:
        return f"b {rng.choice(['==', '!='])} {rng.choice(['true', 'false'])}"
    return f"{_num(rng)} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {_num(rng)}"


def _cpu_rows(table, node):
    return table.append_column("_id", pa.array(np.arange(table.num_rows))).filter(
        to_arrow_expression(node))["_id"].to_numpy()


@pytest.mark.parametrize("seed", range(30))
def test_random_predicates_keep_the_rows_the_cpu_engine_keeps(seed):
    rng = np.random.default_rng(seed)
    table = _table(rng)
    schema = to_schema(table.schema, {})
    checked = 0
    for _ in range(60):
        text = _pred(rng)
        try:
            node = parse_predicate(text, "t")
            check_predicate(node, schema, "t")
        except ConfigError:
            continue
        try:
            expected = _cpu_rows(table, node)
        except pa.ArrowInvalid:  # e.g. an integer overflow Arrow checks: not a predicate users can run
            continue
        with np.errstate(all="ignore"):
            got = np.flatnonzero(E.keep_mask(node, ArrowColumns(table)))
        np.testing.assert_array_equal(got, expected, err_msg=text)
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("text", [
    "f32 == 0.1",  # float32 vs a double literal: compared in float64, so never equal
    "f32 in (0.1, 2.5)",  # in: the literals cast to float32 first, so 0.1 matches 0.1f
    "i8 + i8b > 100",  # int8 arithmetic wraps in int8, as Arrow's unchecked add
    "i8 / 0 > 1",  # true division by zero: inf
    "(f64 > 0) or is_null(f64)",
    "not (s == 'v1') and b",
    "i32 in (1, 2.5)",
])
def test_edge_predicates(text):
    rng = np.random.default_rng(99)
    table = _table(rng, 2000)
    table = table.set_column(table.column_names.index("f32"), "f32",
                             pa.array(np.where(np.arange(2000) % 5 == 0, np.float32(0.1), table["f32"].to_numpy(
                                 zero_copy_only=False)).astype(np.float32)))
    node = parse_predicate(text, "t")
    with np.errstate(all="ignore"):
        got = np.flatnonzero(E.keep_mask(node, ArrowColumns(table)))
    np.testing.assert_array_equal(got, _cpu_rows(table, node))
