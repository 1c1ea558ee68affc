"""The serving row path (backends/cpu/rows.py): batches of up to ROW_PATH_ROWS rows served without a
table per step give, bit for bit, the tables of the batch path (the lowerings), for every op that
has a row form, on awkward values (nulls, NaN, infinities, floats beyond float32, integers in float
columns, values outside the vocabulary), in every input form; a program or a value without a row
form takes the batch path."""

from __future__ import annotations

import glob
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.backends.cpu import compiled
from shardsmith.backends.cpu.rows import RowProgram
from shardsmith.errors import InputError
from shardsmith.serve import ROW_PATH_ROWS, Transform
from tests.conftest import read_split, run_compile
from tests.test_serve import ONE_SPLIT

# Every op with a row form, in one graph, some reading others' results (ids, buckets, scaled floats)
# at offsets in the row path's shared arrays.
ROW_GRAPH = ("[{op: clip, cols: [I1], lower: 1, upper: 50}, {op: log1p, cols: [I2]},"
             " {op: normalize, cols: [I3, I4]}, {op: normalize_minmax, cols: [I5]},"
             " {op: bucketize, cols: [I6], boundaries: [0, 1, 10]}, {op: bucketize, cols: [I11], quantiles: 4},"
             " {op: fill_missing, cols: [I7], value: -1}, {op: fill_missing, cols: [I12], strategy: mean},"
             " {op: categorify, cols: [C1, C5, label, I6], freq_threshold: 2},"
             " {op: hash_bucket, cols: [C2, I8, I4], num_buckets: 1000, seed: 3},"
             " {op: hashed_cross, cols: [C5, C7, I9, I11], num_buckets: 5000, out: X},"
             " {op: rename, mapping: {I10: ten, C3: three}}, {op: drop, cols: [C26]}]")
AWKWARD_FLOATS = [None, float("nan"), float("inf"), float("-inf"), 1e300, -1e300, -0.0, 0.0, 3, -7, 2 ** 24,
                  1e-45, 3.4028235e38, 0.1, 123456.789]


@pytest.fixture(scope="module")
def raw(demo_dir) -> tuple[str, pa.Table]:
    path = sorted(glob.glob(f"{demo_dir}/*.parquet"))[0]
    return path, pq.read_table(path)


@pytest.fixture(scope="module")
def served(raw, tmp_path_factory) -> tuple[Transform, Transform, pa.Table]:
    """The row-form graph compiled: (a Transform, one held to the batch path, the input rows)."""
    path, table = raw
    res = run_compile(path, tmp_path_factory.mktemp("rows"), f"graph={ROW_GRAPH}", *ONE_SPLIT)
    t, ref = Transform.load(res.path), Transform.load(res.path)
    ref.rows = None
    assert t.rows is not None
    assert t(table).table.equals(read_split(res))  # a big batch: the batch path, as compiled
    return t, ref, table


def _bits(table: pa.Table) -> tuple:
    """The table's schema and values, floats by their repr (NaN and -0.0 told apart)."""
    return table.schema, {c: [repr(v) if isinstance(v, float) else v for v in table[c].to_pylist()]
                          for c in table.column_names}


def _same(got, want) -> None:
    assert _bits(got.table) == _bits(want.table)
    assert list(got.rows) == list(want.rows) and list(got.filtered) == list(want.filtered)
    assert got.quarantined.equals(want.quarantined)


def test_one_row_at_a_time_matches_the_batch_path(served):
    t, ref, table = served
    batch = table.slice(0, 400)
    want = ref(batch).table
    for i, row in enumerate(batch.to_pylist()):
        assert _bits(t(row).table) == _bits(want.slice(i, 1)), i


def _awkward_rows(base: dict) -> list[dict]:
    """``base`` with awkward values: each float column takes each of AWKWARD_FLOATS in turn, and
    nulls, empty, unseen, multi-byte and extreme values in the categorical and label columns."""
    rows = []
    for k in range(len(AWKWARD_FLOATS)):  # each float column gets each value, in turn
        rows.append({**base, **{f"I{j}": AWKWARD_FLOATS[(k + j) % len(AWKWARD_FLOATS)] for j in range(1, 14)},
                     "C1": [None, "", "never seen", base["C1"]][k % 4], "C5": [None, 10 ** 15, 2 ** 63 - 1][k % 3],
                     "C2": "é" * k, "label": [None, 0, 1, 127, -128][k % 5]})
    return rows


def test_awkward_values_match_the_batch_path(served):
    t, ref, table = served
    rows = _awkward_rows(table.slice(3, 1).to_pylist()[0])
    with mock.patch.object(RowProgram, "__call__", autospec=True, side_effect=RowProgram.__call__) as row_path:
        for row in rows:
            _same(t(row), ref(row))
        many = {k: [r[k] for r in rows] for k in rows[0]}
        _same(t(many), ref(many))
        _same(t(pa.Table.from_pylist(rows, schema=table.schema)), ref(pa.Table.from_pylist(rows, schema=table.schema)))
    assert row_path.call_count == len(rows) + 2  # every call above took the row path
    out = t(rows[2]).table  # infinities are missing to elementwise ops; a new category is OOV (1), null 2
    assert out["I1"].to_pylist() == [None] and out["C1"].to_pylist() == [1] and out["C5"].to_pylist() == [1]
    assert t(rows[0]).table["C5"].to_pylist() == [2]


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_compiled_and_numpy_row_forms_match_the_batch_path(served, kernels):
    """The fused groups' compiled block kernel (kernels/numba_fused.py ``block``) and the NumPy
    reference give the row path the same bits, one row and a few at a time."""
    t, ref, table = served
    if kernels == "numba":
        pytest.importorskip("numba")
    row_t = Transform(t.manifest, kernels=kernels)
    rows = _awkward_rows(table.slice(7, 1).to_pylist()[0]) + table.slice(20, 30).to_pylist()
    results = []

    def record(*args):
        results.append(real(*args))
        return results[-1]

    real = compiled.fused_block
    with mock.patch.object(compiled, "fused_block", side_effect=record):
        for row in rows:
            _same(row_t(row), ref(row))
        many = {k: [r[k] for r in rows[:40]] for k in rows[0]}
        _same(row_t(many), ref(many))
    ran = [r is not None for r in results]
    # numba: the compiled block ran in every call (the float chains; bucket numbers stay on NumPy);
    # numpy: never asked
    assert sum(ran) >= len(rows) + 1 if kernels == "numba" else ran == []


def test_every_input_form_gives_the_same_table(served):
    t, ref, table = served
    part = table.slice(100, 20)
    want = ref(part)
    for form in (part, part.to_pandas(), part.to_pydict(), part.to_batches()[0],
                 part.select(list(reversed(part.column_names))).append_column("extra", pa.array([1] * 20))):
        _same(t(form), want)
    _same(t({k: v[0] for k, v in part.slice(0, 1).to_pydict().items()}), ref(part.slice(0, 1)))
    _same(t(part.slice(0, 0)), ref(part.slice(0, 0)))


def test_batch_size_and_values_choose_the_path(served):
    t, _, table = served
    with mock.patch.object(RowProgram, "__call__", autospec=True, side_effect=RowProgram.__call__) as row_path:
        t(table.slice(0, ROW_PATH_ROWS))
        assert row_path.call_count == 1
        t(table.slice(0, ROW_PATH_ROWS + 1))  # past the threshold: the lowerings
        row = table.slice(0, 1).to_pylist()[0]
        got = t({**row, "I1": np.float64(2.5)})  # not a plain Python value: Arrow converts it
        assert row_path.call_count == 1 and got.table["I1"].to_pylist() == t({**row, "I1": 2.5}).table["I1"].to_pylist()
    # Values the row path does not take go to Arrow, which refuses them as before.
    with pytest.raises(InputError, match="batch: column 'label': Expected integer, got bool"):
        t({**row, "label": True})
    with pytest.raises(InputError, match="batch: column 'I1'"):
        t({**row, "I1": 2 ** 24 + 1})  # float32 cannot hold it: refused, as the batch path does
    with pytest.raises(InputError, match="batch: column 'I13' is missing"):
        t({k: v for k, v in row.items() if k != "I13"})
    assert t({k: v for k, v in row.items() if k != "C26"}).table.num_rows == 1  # dropped: not read


def test_warm_builds_the_kernels_both_paths_ask_for(served):
    t, ref, table = served
    assert t.warm(table.slice(0, 5), timeout=120)  # kernels=auto: built (or loaded) on the background thread
    _same(t(table.slice(0, 5)), ref(table.slice(0, 5)))


def test_two_threads_run_a_batchs_columns_side_by_side(served):
    t, ref, table = served
    two = Transform(t.manifest, threads=2)
    assert two.warm(table.slice(0, 5), timeout=120)
    pool, big = two._executor(), table.slice(0, 5000)
    with mock.patch.object(pool, "map", wraps=pool.map) as spread:
        _same(two(big), ref(big))
        used = spread.call_count
        assert used >= 2  # the fused groups' kernels and categorify's lookups
        _same(two(table.slice(0, 4000)), ref(table.slice(0, 4000)))  # under COLUMN_POOL_ROWS: in order
        assert spread.call_count == used
