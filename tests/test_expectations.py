"""Expectations: config errors name the key; every check's count equals a direct computation on
the input; fail stops the compile with exit 3 and leaves no dataset; warn records; quarantine
sends rows to the quarantine (accounted for, and left out of the fitted statistics)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shardsmith.compiler.build import build
from shardsmith.compiler.config import compose
from shardsmith.errors import ConfigError
from shardsmith.runtime import quality
from tests.conftest import cli, read_split, run_compile

ONE_SPLIT = ("~split.fractions.valid", "~split.fractions.test", "split.fractions.train=1.0")


@pytest.fixture(scope="module")
def raw(demo_dir) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(f"{demo_dir}/*.parquet"))])


@pytest.mark.parametrize("expect, where, what", [
    ("[{col: I1, check: nonnull}]", "expect[0].check", "did you mean 'not_null'"),
    ("[{col: I1, check: unique, severity: quarantine}]", "expect[0].severity", "only a row check"),
    ("[{col: C1, check: between, min: 0, at: input}]", "expect[0].col", "needs a numeric column"),
    ("[{col: I1, check: between}]", "expect[0].min", "needs min, max or both"),
    ("[{col: I1, check: not_null, mx: 1}]", "expect[0].mx", "unknown key (did you mean 'max'?)"),
    ("[{col: I1, check: not_null, split: tran}]", "expect[0].split", "did you mean 'train'"),
    ("[{col: I14, check: not_null, at: input}]", "expect[0].col", "column 'I14' is not in the input schema"),
    ("[{check: expr, expr: 'I1 + 1', at: input}]", "expect[0].expr", "must be true/false"),
    ("[{col: C1, check: in_set, values: [1, 2], at: input}]", "expect[0].values", "cannot test a string column"),
    ("[{check: row_count, col: I1, min: 1}]", "expect[0].col", "about the whole dataset"),
    ("[{col: I1, check: max_null_fraction, max: 2}]", "expect[0].max", "expected a fraction in [0, 1]"),
])
def test_config_errors_name_the_key(demo_dir, expect, where, what):
    with pytest.raises(ConfigError) as err:
        build(compose([f"source.paths=[{demo_dir}/*.parquet]", f"expect={expect}"]))
    assert err.value.where == where and what in err.value.message, str(err.value)


def _missing(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.is_null(col, nan_is_null=True))


def test_checks_count_what_the_data_holds(demo_dir, raw, tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "DISTINCT_BUCKET_ROWS", 7000)  # several buckets: counts must still add up
    expect = ("expect=[{col: 'I1?', check: max_null_fraction, max: 0.2, at: input, severity: warn},"
              " {check: expr, expr: 'I3 <= I4 or is_null(I3) or is_null(I4)', at: input, severity: warn},"
              " {col: C3, check: distinct_count, min: 2, at: input},"
              " {col: C6, check: unique, at: input, severity: warn},"
              " {col: label, check: unique, at: input, severity: warn},"
              " {col: I5, check: mean_between, max: 100, at: input},"
              " {col: label, check: in_set, values: [0, 1]}, {check: row_count, min: 1000, max: 30000},"
              " {check: split_fractions, tolerance: 0.02}]")
    res = run_compile(f"{demo_dir}/*.parquet", tmp_path / "out", expect)
    q = {r["key"]: r for r in res.manifest["quality"]["expectations"]}
    for c in ("I10", "I11", "I12", "I13"):
        nulls = int(_missing(raw[c]).sum())
        assert q[f"expect[0].{c}"]["observed"]["nulls"] == nulls
        assert q[f"expect[0].{c}"]["status"] == ("passed" if nulls / 30_000 <= 0.2 else "warned")
    i3, i4 = (raw[c].to_numpy(zero_copy_only=False).astype(float) for c in ("I3", "I4"))
    assert q["expect[1]"]["observed"]["failing"] == int(np.sum(i3 > i4))  # NaN comparisons are false
    assert q["expect[2]"]["observed"]["distinct"] == len(pc.unique(raw["C3"].drop_null()))
    c6 = raw["C6"].to_numpy()
    values, counts = np.unique(c6, return_counts=True)
    assert q["expect[3]"]["observed"]["distinct"] == len(values)
    assert q["expect[3]"]["observed"]["duplicated_values"] == int((counts > 1).sum())
    assert q["expect[3]"]["observed"]["duplicate_rows"] == int((counts - 1).sum())
    assert q["expect[3]"]["observed"]["examples"][0] == [repr(int(values[counts.argmax()])), int(counts.max())]
    assert q["expect[4]"]["status"] == "warned" and q["expect[4]"]["observed"]["distinct"] == 2
    i5 = raw["I5"].drop_null().to_numpy().astype(np.float64)
    assert q["expect[5]"]["observed"]["mean"] == pytest.approx(float(np.mean(i5[np.isfinite(i5)])), rel=1e-12)
    assert q["expect[6]"]["status"] == "passed" and q["expect[6]"]["observed"]["rows"] == 30_000
    assert q["expect[7]"]["observed"] == {"rows": 30_000} and q["expect[7]"]["status"] == "passed"
    assert q["expect[8]"]["status"] == "passed"
    summary = res.manifest["quality"]
    assert summary["counts"]["failed"] == 0 and summary["passed"] is False  # warnings were recorded
    assert not os.path.exists(os.path.join(os.path.dirname(res.path), quality.QUALITY_DIR))


def test_quarantine_takes_the_rows_and_leaves_them_out_of_the_fit(demo_dir, raw, tmp_path):
    graph = "graph=[{op: normalize, cols: [I2]}]"
    expect = "expect=[{col: I2, check: between, min: 0, at: input, severity: quarantine}]"
    res = run_compile(f"{demo_dir}/*.parquet", tmp_path / "out", graph, expect, *ONE_SPLIT)
    i2 = raw["I2"].to_numpy(zero_copy_only=False).astype(np.float64)
    negative = int(np.sum(i2 < 0))
    assert negative > 100
    assert res.manifest["rows"] == {"in": 30_000, "out": 30_000 - negative, "filtered": 0, "quarantined": negative}
    r = res.manifest["quality"]["expectations"][0]
    assert r["status"] == "quarantined" and r["observed"]["quarantined"] == negative
    root = os.path.dirname(res.path)
    qt = pa.concat_tables([pq.read_table(os.path.join(root, s["path"])) for s in res.manifest["quarantine"]["shards"]])
    assert qt.num_rows == negative and set(qt["_step"].to_pylist()) == {"expect[0]"}
    assert qt["_reason"][0].as_py() == "expectation expect[0] I2 between [0, inf] (input)"
    kept = i2[np.isfinite(i2) & (i2 >= 0)]
    state = res.manifest["lineage"]["columns"]["I2"]["steps"][0]["state"]
    assert state["entries"] == ["graph[0]/I2"]
    out = read_split(res)["I2"].to_numpy(zero_copy_only=False)
    expected = ((kept - kept.mean()) / kept.std()).astype(np.float32)
    np.testing.assert_allclose(out[~np.isnan(out)], expected, rtol=2e-6, atol=1e-6)  # fitted on kept rows only


def test_a_failed_expectation_stops_before_the_commit(demo_dir, tmp_path):
    out = tmp_path / "out"
    proc = cli("compile", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={out}", "engine=inprocess",
               f"hydra.run.dir={tmp_path}/hydra",
               "expect=[{col: I2, check: between, min: 0, at: input}, {col: label, check: not_null},"
               " {check: row_count, min: 50000}, {col: I3, check: max_null_fraction, max: 0.01, at: input, "
               "severity: warn}]")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == ["expect[0]", "expect[2]"], proc.stderr
    assert lines[0].startswith("error: expect[0]: expectation broken: I2 between [0, inf] (input): ")
    assert " rows offend (first: " in lines[0]
    assert lines[1] == "error: expect[2]: expectation broken: row_count in [50000, inf]: 30,000 rows"
    assert "warning: expect[3]: expectation broken: I3 max_null_fraction" in proc.stdout + proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.partial*"))
