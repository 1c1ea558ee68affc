"""The NumPy path's table of a column's values (backends/cpu/lowering.py ``fused_by_table``): where
it applies, the same bits as running the chain on every row (``fused_values``); where it must not
(fractions, -0.0, infinities, wide ranges, few rows), it declines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shardsmith.backends.cpu.arrays import numeric_values
from shardsmith.backends.cpu.lowering import TABLE_MIN_ROWS, _fused_numpy, fused_by_table, fused_values
from shardsmith.ir import Column, Schema
from tests.test_cpu_kernels import SRC_DTYPES, arrow, fused_node, random_chain

N = 3 * TABLE_MIN_ROWS


def _columns(rng, dtype: str, make) -> dict:
    return {c: arrow(make(rng).astype(dtype), dtype, rng.random(N) > 0.15) for c in ("a", "b")}


def _both(ops, states, columns: dict, dtype: str):
    node = fused_node(ops, Schema(tuple(Column(c, dtype) for c in columns)))
    for group in node.groups:
        srcs = [numeric_values(columns[c]) for c in group.srcs]
        yield fused_by_table(node, group, srcs, N, states), fused_values(node, group, srcs, N, states)
        frame = pa.table(columns)
        got = _fused_numpy(node, group, frame, states)
        for name, arr in got.items():  # and the lowering's arrays: the same nulls and bits
            want = fused_values(node, group, srcs, N, states)[list(group.outs).index(name)]
            assert np.array_equal(np.asarray(arr.is_null()), np.isnan(want))


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and np.array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(want)
    assert got[keep].view(f"u{got.itemsize}").tolist() == want[keep].view(f"u{want.itemsize}").tolist()


@pytest.mark.parametrize("dtype", SRC_DTYPES)
@pytest.mark.parametrize("trial", range(3))
def test_whole_numbers_take_the_table_with_the_same_bits(dtype, trial):
    rng = np.random.default_rng(SRC_DTYPES.index(dtype) * 10 + trial)
    signed = dtype != "bool" and np.dtype(dtype).kind != "u"
    lo = -200 if signed else 0
    columns = _columns(rng, dtype, lambda r: r.integers(lo, lo + 700, N))
    ops, states = random_chain(rng, ("a", "b"), dtype)
    for got, want in _both(ops, states, columns, dtype):
        assert got is not None, [op.describe() for op in ops]  # the table applied
        _same(got, want)


@pytest.mark.parametrize("case", ["fraction", "negative zero", "infinity", "wide", "beyond int32", "all null",
                                  "near the int32 limit"])
def test_values_the_table_cannot_take_decline_or_match(case):
    rng = np.random.default_rng(5)
    values = rng.integers(-50, 50, N).astype(np.float64)
    if case == "fraction":
        values[17] = 2.5
    elif case == "negative zero":
        values[17] = -0.0
    elif case == "infinity":
        values[17] = np.inf
    elif case == "wide":
        values[17] = 1e6
    elif case == "beyond int32":
        values = np.full(N, 2.0**60) + rng.integers(0, 3, N) * 2.0**8  # whole and close, but not int32
    elif case == "near the int32 limit":
        values = 2.0**31 - 1 - rng.integers(0, 1000, N)
    columns = {"a": arrow(values, "float64", None if case != "all null" else np.zeros(N, bool))}
    ops, states = random_chain(np.random.default_rng(1), ("a",), "float64")
    for got, want in _both(ops, states, columns, "float64"):
        if case != "near the int32 limit":
            assert got is None
        else:
            _same(got, want)
