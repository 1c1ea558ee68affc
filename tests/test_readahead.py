"""Partitions read ahead while ``shardsmith compile`` starts (inputs/readahead.py): the same rows,
row numbers and errors as the task's own read, a file changed in between read again, nothing kept
past the compile, and the same shards as a compile without it."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.errors import InputError
from shardsmith.inputs import read
from shardsmith.inputs.readahead import ReadAhead
from tests.conftest import cli, run_compile


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"a": np.arange(start, start + n, dtype=np.int64), "s": [f"v{i}" for i in range(start, start + n)]})


def _wait(ahead: ReadAhead, reads: int) -> None:
    for _ in range(500):
        if ahead.reads >= reads:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"read ahead only {ahead.reads} of {reads}")


def test_jobs_run_in_order_and_the_first_take_stops_the_rest():
    started = []
    gate = threading.Event()

    def job(name):
        def run():
            started.append(name)
            if name == "b":
                gate.wait(5)
            return f"rows of {name}"
        return run

    ahead = ReadAhead([(k, job(k)) for k in "abcd"], stat=lambda key: 1)
    _wait(ahead, 1)  # a done, b in progress (held by the gate)
    assert ahead.take("a") == "rows of a"  # the compile has started: c and d are its tasks' now
    gate.set()
    assert ahead.take("b") == "rows of b"  # in progress when asked: waited for, not read twice
    assert ahead.take("c") is None and ahead.take("a") is None  # never begun; already taken
    assert started == ["a", "b"] and ahead.taken == 2
    ahead.close()


def test_an_error_reaches_the_reader_and_a_changed_file_is_read_again():
    version = {"x": 1, "y": 1}

    def fail():
        raise InputError("cannot read row group(s) 0: corrupt page", "x.parquet")

    ahead = ReadAhead([("x", fail), ("y", lambda: "old rows")], stat=lambda key: version[key])
    _wait(ahead, 2)
    with pytest.raises(InputError, match="corrupt page"):
        ahead.take("x")
    version["y"] = 2  # rewritten after it was read ahead
    assert ahead.take("y") is None and ahead.taken == 0


def test_read_parquet_takes_the_same_rows_and_drops_a_stale_read(tmp_path):
    path = str(tmp_path / "f.parquet")
    pq.write_table(_table(5000), path, row_group_size=1000)
    args = (path, (1, 2), (1000, 2000), ["a", "s"], "fail")
    fresh = read.read_parquet(*args)
    ahead = read.start_read_ahead([args])
    try:
        _wait(ahead, 1)
        got = read.read_parquet(*args)
        assert ahead.taken == 1
        assert got.table.equals(fresh.table) and np.array_equal(got.rows, fresh.rows) and got.count == fresh.count
        assert list(got.rows[:2]) == [1000, 1001]
        # Read ahead, then the file rewritten: the compile reads the new file, not the old rows.
        ahead = read.start_read_ahead([args])
        _wait(ahead, 1)
        pq.write_table(_table(5000, start=10**6), path, row_group_size=1000)
        os.utime(path, ns=(10**18, 10**18))  # a distinct time even on a coarse clock
        assert read.read_parquet(*args).table["a"][0].as_py() == 10**6 + 1000
        assert ahead.taken == 0
    finally:
        assert read.end_read_ahead() is ahead
    assert read.end_read_ahead() is None


def test_compile_reads_ahead_and_writes_the_same_shards(demo_dir, tmp_path):
    """The command line reads ahead (the log and the profile say so); the shards are byte for byte
    those of the same compile without it (the library call reads none ahead), and no read-ahead
    is left behind in the library afterwards."""
    common = ["output.shard_rows=7000", "fit.cache=off", "engine.cluster=auto"]
    r = cli("compile", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={tmp_path / 'cli'}", *common)
    assert r.returncode == 0, r.stderr
    assert "partition(s) decoded while the process started" in r.stdout + r.stderr
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    profile = json.loads((tmp_path / "cli" / "profile.json").read_text())
    ahead = [s for s in profile["stages"] if s["name"] == "driver:read ahead"]
    assert len(ahead) == 1 and ahead[0]["kind"] == "read"
    ref = run_compile(f"{demo_dir}/*.parquet", tmp_path / "lib", *common, engine="cpu")
    assert read._AHEAD is None
    hashes = {s["path"]: s["sha256"] for sp in manifest["splits"].values() for s in sp["shards"]}
    assert hashes == {s["path"]: s["sha256"] for sp in ref.manifest["splits"].values() for s in sp["shards"]}
    assert manifest["rows"] == ref.manifest["rows"] and manifest["stats"] == ref.manifest["stats"]
