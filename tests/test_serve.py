"""Serving parity: Transform.load(manifest)(batch) gives, for the same input rows, exactly the values
the compile wrote, for every op (and the rows filters removed or the quarantine took are reported)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.errors import InputError, PlanError
from shardsmith.ops import registered_ops
from shardsmith.serve import Transform
from tests.conftest import read_split, run_compile

ONE_SPLIT = ("~split.fractions.valid", "~split.fractions.test", "split.fractions.train=1.0", "fit.cache=off")
CASES = {
    "fill_missing": "[{op: fill_missing, cols: [I1], value: -1}, {op: fill_missing, cols: [I2], strategy: mean},"
                    " {op: fill_missing, cols: [I3], strategy: median}]",
    "clip": "[{op: clip, cols: ['I*'], lower: 1, upper: 50}]",
    "log1p": "[{op: log1p, cols: [I1, I2]}]",
    "normalize": "[{op: normalize, cols: ['I*']}]",
    "normalize_minmax": "[{op: normalize_minmax, cols: [I4, I5]}]",
    "bucketize": "[{op: bucketize, cols: [I6], boundaries: [0, 1, 10]}, {op: bucketize, cols: [I7], quantiles: 8}]",
    "categorify": "[{op: categorify, cols: [C1, C5, C20, label], freq_threshold: 2, max_size: 500}]",
    "hash_bucket": "[{op: hash_bucket, cols: [C2, C6, I8], num_buckets: 1000, seed: 3}]",
    "hashed_cross": "[{op: hashed_cross, cols: [C1, C7, I9], num_buckets: 5000, out: X}]",
    "filter": "[{op: filter, expr: 'is_null(I2) or I2 >= 0'}, {op: normalize, cols: [I3]},"
              " {op: filter, expr: 'I3 > 0 or C3 in (\"ac5e3f5b\", \"x\")'}]",
    "rename": "[{op: rename, mapping: {I1: first, C1: cat}}]",
    "drop": "[{op: drop, cols: ['C??', 'I1?']}]",
    "cast": "[{op: cast, cols: [I1], dtype: int32}, {op: cast, cols: [I2], dtype: uint8, on_error: quarantine},"
            " {op: cast, cols: [I4], dtype: int8, on_error: 'null'},"
            " {op: cast, cols: [C1], dtype: int32, on_error: 'null'}, {op: cast, cols: [label], dtype: string}]",
    "derive": "[{op: derive, out: R, expr: 'if_else(is_null(I1), -1, I1 * 2 + I2 // 3)', dtype: float32},"
              " {op: derive, out: S, expr: 'upper(substr(C1, 0, 3))'}, {op: derive, out: I3, expr: 'abs(I3) % 7'}]",
    "groupby_features": "[{op: groupby_features, keys: [C2], cols: [I1, I2],"
                        " stats: [count, sum, mean, std, min, max]}]",
}
# Ops with a row form (backends/cpu/rows.py): a served batch of a few rows skips the lowerings;
# the checks below cover both paths (tests/test_serve_rows.py compares them on awkward values).
ROW_FORM_OPS = {"fill_missing", "clip", "log1p", "normalize", "normalize_minmax", "bucketize", "categorify",
                "hash_bucket", "hashed_cross", "rename", "drop"}
# Ops whose serving is tested below with data of their own: join (a side table), target_encode
# (a served row gets the full-fit encoding, so parity is with the rows outside the fit split), lag
# (refused, naming the step).
OWN_TESTS = {"join", "target_encode", "lag"}


def test_every_registered_op_has_a_case():
    builtin = {name for name, cls in registered_ops().items() if cls.__module__.startswith("shardsmith.")}
    assert builtin <= set(CASES) | OWN_TESTS


@pytest.fixture(scope="module")
def raw(demo_dir) -> tuple[str, pa.Table]:
    path = sorted(glob.glob(f"{demo_dir}/*.parquet"))[0]
    return path, pq.read_table(path)


def _quarantine(res) -> pa.Table | None:
    root = os.path.dirname(res.path)
    shards = res.manifest["quarantine"]["shards"]
    return pa.concat_tables([pq.read_table(os.path.join(root, s["path"])) for s in shards]) if shards else None


def _check_parity(res, raw: pa.Table) -> Transform:
    t = Transform.load(res.path)
    out = t(raw)
    shards = read_split(res)
    assert out.table.equals(shards), res.manifest["name"]
    q = _quarantine(res)
    assert out.quarantined.num_rows == (q.num_rows if q is not None else 0)
    if q is not None:  # the same records, but for the file, which a batch does not have
        assert out.quarantined.drop_columns(["_file"]).equals(q.drop_columns(["_file"]))
    kept = len(out.rows) + len(out.filtered) + out.quarantined.num_rows
    assert kept == raw.num_rows and len(out.filtered) == res.manifest["rows"]["filtered"]
    assert np.all(np.diff(out.rows) > 0)  # input order
    # Row ranges on two threads (a batch of 2 x PART_ROWS rows or more): the same result.
    two = Transform.load(res.path, threads=2)(raw)
    assert two.table.equals(out.table) and two.quarantined.equals(out.quarantined)
    assert np.array_equal(two.rows, out.rows) and np.array_equal(two.filtered, out.filtered)
    # A few rows at a time, and one row: the same values as the shards' rows for them.
    position = {int(r): i for i, r in enumerate(out.rows)}
    for start in (0, 37, 4000):
        part = t(raw.slice(start, 9))
        want = [position[start + int(r)] for r in part.rows]
        assert part.table.equals(shards.take(want)) if want else part.table.num_rows == 0
    one = t(raw.slice(11, 1).to_pylist()[0])
    assert one.table.equals(shards.take([position[11]])) if 11 in position else one.table.num_rows == 0
    return t


@pytest.mark.parametrize("op", sorted(CASES))
def test_serving_matches_the_shards(op, raw, tmp_path):
    path, table = raw
    res = run_compile(path, tmp_path / op, f"graph={CASES[op]}", *ONE_SPLIT)
    t = _check_parity(res, table)
    assert (t.rows is not None) == (op in ROW_FORM_OPS)  # filters, casts, derive, keyed ops: the lowerings
    if op == "filter":
        assert res.manifest["rows"]["filtered"] > 100  # both filters removed rows, and serving says which
    if op == "cast":
        assert res.manifest["rows"]["quarantined"] > 100


def test_quarantine_expectations_are_served_too(raw, tmp_path):
    path, table = raw
    res = run_compile(path, tmp_path / "q", "graph=[{op: categorify, cols: [C3]}]", *ONE_SPLIT,
                      "expect=[{col: I2, check: between, min: 0, at: input, severity: quarantine},"
                      " {col: label, check: in_set, values: [0], severity: quarantine}]")
    assert {r["status"] for r in res.manifest["quality"]["expectations"]} == {"quarantined"}
    _check_parity(res, table)


def test_batches_as_tables_frames_and_dicts(raw, tmp_path):
    path, table = raw
    res = run_compile(path, tmp_path / "d", *ONE_SPLIT)
    t = Transform.load(os.path.dirname(res.path))
    part = table.slice(100, 50)
    want = t(part).table
    assert t(part.to_pandas()).table.equals(want)
    assert t(part.to_pydict()).table.equals(want)
    assert t({k: v[0] for k, v in part.slice(0, 1).to_pydict().items()}).table.equals(want.slice(0, 1))
    assert t(part.select(list(reversed(part.column_names))).append_column("extra", pa.array([1] * 50))
             ).table.equals(want)
    with pytest.raises(InputError, match="batch: column 'C26' is missing"):
        t(part.drop_columns(["C26"]))
    with pytest.raises(InputError, match="batch: column 'I1'"):
        t({**part.slice(0, 1).to_pydict(), "I1": ["not a number"]})


@pytest.fixture(scope="module")
def keyed(tmp_path_factory) -> tuple[str, str, pa.Table]:
    """4,000 rows (key, label, part: train or valid) in one file, and a side table by key."""
    d = tmp_path_factory.mktemp("keyed")
    rng = np.random.default_rng(7)
    key = rng.integers(0, 40, 4000)
    table = pa.table({"key": key, "label": (rng.random(4000) < 0.2 + key / 100).astype(np.int8),
                      "part": np.where(rng.random(4000) < 0.7, "train", "valid")})
    pq.write_table(table, d / "rows.parquet", row_group_size=1000)
    side = pa.table({"key": np.arange(0, 45, dtype=np.int32)[::-1], "size": np.arange(45, dtype=np.float64) * 1.5,
                     "name": [f"k{i}" for i in range(45)]})
    pq.write_table(side, d / "side.parquet")
    return str(d / "rows.parquet"), str(d / "side.parquet"), table


BY_PART = ("split.by=column", "split.key=part", "+split.values.train=[train]", "+split.values.valid=[valid]",
           "split.fit_on=train", "fit.cache=off")


def test_serving_a_join_matches_the_shards(keyed, tmp_path):
    path, side, table = keyed
    res = run_compile(path, tmp_path / "j", f"+tables={{side: {{paths: [{side}]}}}}", *ONE_SPLIT,
                      "graph=[{op: join, table: side, on: [key], cols: [size, name], how: inner},"
                      " {op: categorify, cols: [name]}]")
    out = Transform.load(res.path)(table)
    assert out.table.equals(read_split(res)) and out.table.num_rows == (table["key"].to_numpy() < 45).sum()
    served = Transform.load(res.path)({"key": [3, 99], "label": [0, 1], "part": ["train", "x"]})
    assert served.table["size"].to_pylist() == [41 * 1.5] and list(served.filtered) == [1]  # 99: no match


def test_serving_target_encode_gives_the_full_fit_encoding(keyed, tmp_path):
    path, _, table = keyed
    res = run_compile(path, tmp_path / "te", *BY_PART,
                      "graph=[{op: target_encode, cols: [key], target: label, smoothing: 10, folds: 4}]")
    out = Transform.load(res.path)(table)
    valid = np.asarray(table["part"]) == "valid"
    got = out.table.filter(pa.array(valid))
    assert got.equals(read_split(res, "valid"))  # rows outside the fit split: as compiled
    # Rows of the fit split got out-of-fold values in the shards; served, the full-fit value of their key.
    by_key = dict(zip(got["key"].to_pylist(), got["key_te"].to_pylist()))
    train = out.table.filter(pa.array(~valid))
    assert all(by_key.get(k, v) == v for k, v in zip(train["key"].to_pylist(), train["key_te"].to_pylist()))
    assert not train["key_te"].equals(read_split(res, "train")["key_te"])


def test_serving_refuses_a_lag_naming_the_step(keyed, tmp_path):
    path, _, table = keyed
    res = run_compile(path, tmp_path / "lag", *BY_PART, "graph=[{op: lag, keys: [part], order_by: key,"
                      " cols: [label], output: value}]")
    with pytest.raises(PlanError) as err:
        Transform.load(res.path)
    assert str(err.value).startswith("graph[0]: op 'lag' cannot be served: its values come from the dataset's")
    assert "\n" not in str(err.value)
