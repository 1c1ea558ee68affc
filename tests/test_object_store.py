"""Compiles from and to an object store: a real S3-compatible server (moto's server mode, on
127.0.0.1, started here as the loader's remote tests do). Inputs are read through fsspec (globs,
footers, fingerprints, row groups), shards are written under a staging prefix and copied at the
commit, the manifest last; one compile at a time per prefix (a lock object with a lease)."""

from __future__ import annotations

import json
import os
import socket
import time

import pyarrow.parquet as pq
import pytest

from shardsmith.errors import ConfigError, ShardsmithError
from shardsmith.runtime import fitsource
from shardsmith.runtime import lock as lk
from shardsmith.runtime.remote import RemoteOutput
from shardsmith.shards.readers import load_manifest
from tests.conftest import cli, run_compile
from tests.test_output_safety import _crash_after, _hashes

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")
SMALL = ("output.shard_rows=4000", "engine.partition_bytes=200KB")


@pytest.fixture(scope="module")
def s3(demo_dir):
    """A moto S3 server with bucket ``lake`` holding the demo files under ``raw/``; the compile
    finds it through storage options (endpoint) and the environment (credentials, region)."""
    from moto.server import ThreadedMotoServer

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.mkdir("lake")
    fs.put(demo_dir + "/", "lake/raw/", recursive=True)
    yield endpoint, fs
    fs.clear_instance_cache()
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def opts(endpoint: str) -> tuple[str, ...]:
    return (f"+source.storage_options.endpoint_url={endpoint}", f"+output.storage_options.endpoint_url={endpoint}")


def objects(fs, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {p: fs.cat_file(p) for p in fs.find(prefix)}


def test_compile_from_and_to_s3(s3, demo_dir, tmp_path):
    endpoint, fs = s3
    remote = run_compile("s3://lake/raw/*.parquet", "s3://lake/ds", *SMALL, *opts(endpoint))
    local = run_compile(f"{demo_dir}/*.parquet", tmp_path / "local", *SMALL)
    assert remote.path == "s3://lake/ds/manifest.json"
    assert _hashes(remote) == _hashes(local)  # the same shards, byte for byte
    assert remote.manifest["rows"] == local.manifest["rows"]
    assert [i["path"] for i in remote.manifest["inputs"]] == [f"s3://lake/raw/part-0000{i}.parquet" for i in range(3)]
    assert remote.manifest["config"]["resolved"]["output"]["storage_options"] == {"endpoint_url": endpoint}
    fs.invalidate_cache()
    names = {p.removeprefix("lake/") for p in fs.find("lake")}
    assert not [n for n in names if ".partial-" in n or n.endswith(".lock")]  # no staging left, no lock
    m = load_manifest("s3://lake/ds", {"endpoint_url": endpoint})
    for shard in (s for sp in m["splits"].values() for s in sp["shards"]):
        assert len(fs.cat_file(f"lake/ds/{shard['path']}")) == shard["bytes"]
    assert {"ds/manifest.json", "ds/profile.json", "ds/state/state.json"} <= names
    again = run_compile("s3://lake/raw/*.parquet", "s3://lake/ds", *SMALL, *opts(endpoint))
    assert again.up_to_date


def test_the_loader_reads_the_compiled_s3_dataset(s3):
    pytest.importorskip("torch")
    from shardsmith.shards import ShardDataset

    endpoint, _ = s3
    run_compile("s3://lake/raw/*.parquet", "s3://lake/ds2", *SMALL, *opts(endpoint))
    ds = ShardDataset("s3://lake/ds2", split="valid", batch_size=500, storage_options={"endpoint_url": endpoint})
    rows = sum(len(b["label"]) for b in ds)
    assert rows == ds.manifest["splits"]["valid"]["rows"] > 0


def test_csv_from_s3_with_a_bad_row_quarantined(s3, tmp_path):
    endpoint, fs = s3
    lines = ["label,I1,C1"] + [f"{i % 2},{i},c{i % 7}" for i in range(5000)]
    lines[100] = "1,x,c1"
    fs.pipe_file("lake/csv/a.csv", ("\n".join(lines) + "\n").encode())
    res = run_compile("s3://lake/csv/", "s3://lake/csvds", "source.format=csv", "source.on_error=quarantine",
                      "+source.schema.I1=int64",
                      "roles={label: label}", "graph=[{op: log1p, cols: [I1]}]", *opts(endpoint))
    assert res.manifest["rows"] == {"in": 5000, "out": 4999, "filtered": 0, "quarantined": 1}
    q = res.manifest["quarantine"]["shards"][0]
    with fs.open(f"lake/csvds/{q['path']}") as f:
        table = pq.read_table(f)
    assert table["_file"].to_pylist() == ["s3://lake/csv/a.csv"] and table["_row"].to_pylist() == [99]


def test_overwrite_on_s3_replaces_only_a_dataset(s3):
    endpoint, fs = s3
    fs.pipe_file("lake/mine/report.docx", b"the user's own object")
    before = objects(fs, "lake/mine")
    with pytest.raises(ConfigError, match="holds no shardsmith dataset"):
        run_compile("s3://lake/raw/*.parquet", "s3://lake/mine", "output.overwrite=true", *SMALL, *opts(endpoint))
    assert objects(fs, "lake/mine") == before
    with pytest.raises(ConfigError, match="holds the input file"):
        run_compile("s3://lake/raw/*.parquet", "s3://lake/raw", "output.overwrite=true", *opts(endpoint))
    first = run_compile("s3://lake/raw/*.parquet", "s3://lake/ds3", "output.shard_rows=2000", *opts(endpoint))
    second = run_compile("s3://lake/raw/*.parquet", "s3://lake/ds3", "output.shard_rows=6000",
                         "output.overwrite=true", *opts(endpoint))
    fs.invalidate_cache()
    left = {p.removeprefix("lake/ds3/") for p in fs.find("lake/ds3")}
    listed = {s["path"] for sp in second.manifest["splits"].values() for s in sp["shards"]}
    assert len(_hashes(first)) > len(_hashes(second))
    assert {p for p in left if p.endswith(".parquet") and not p.startswith("state/")} == listed


def test_a_live_lock_object_refuses_a_second_compile(s3):
    endpoint, fs = s3
    holder = {"host": "trainer-7", "pid": 4242, "started": "2026-11-29T10:00:00+00:00", "expires": time.time() + 60}
    fs.pipe_file("lake/ds4.lock", json.dumps(holder).encode())
    with pytest.raises(ShardsmithError, match="another compile is writing 's3://lake/ds4' .pid 4242 on trainer-7"):
        run_compile("s3://lake/raw/*.parquet", "s3://lake/ds4", *SMALL, *opts(endpoint))
    fs.pipe_file("lake/ds4.lock", json.dumps({**holder, "expires": time.time() - 1}).encode())  # lease ran out
    res = run_compile("s3://lake/raw/*.parquet", "s3://lake/ds4", *SMALL, *opts(endpoint))
    assert res.manifest["rows"]["out"] > 0
    assert not fs.exists("lake/ds4.lock")


def test_the_lease_is_created_if_absent_and_renewed(s3, monkeypatch):
    endpoint, fs = s3
    monkeypatch.setattr(lk, "RENEW_S", 0.2)
    a = lk.LeaseLock("s3://lake/ds5", {"endpoint_url": endpoint})
    a.acquire()
    first = json.loads(fs.cat_file("lake/ds5.lock"))
    assert first["host"] == socket.gethostname() and first["pid"] == os.getpid()
    with pytest.raises(ShardsmithError, match="another compile is writing"):
        lk.LeaseLock("s3://lake/ds5", {"endpoint_url": endpoint}).acquire()
    time.sleep(1.0)
    assert json.loads(fs.cat_file("lake/ds5.lock"))["expires"] > first["expires"]  # renewed
    a.release()
    assert not fs.exists("lake/ds5.lock")


def test_a_crashed_s3_compile_resumes(s3, tmp_path, monkeypatch):
    endpoint, fs = s3
    monkeypatch.setenv("SHARDSMITH_CACHE", str(tmp_path / "cache"))
    args = ("s3://lake/raw/*.parquet", "s3://lake/ds6", *SMALL, *opts(endpoint))
    _crash_after(monkeypatch, 4)
    monkeypatch.setattr(RemoteOutput, "abandon", lambda self: None)  # a kill cleans nothing up
    with pytest.raises(SystemExit):
        run_compile(*args)
    monkeypatch.undo()
    monkeypatch.setenv("SHARDSMITH_CACHE", str(tmp_path / "cache"))
    fs.invalidate_cache()
    staged = [p for p in fs.find("lake") if ".partial-" in p and p.endswith(".parquet")]
    assert len(staged) == 4 and not fs.exists("lake/ds6/manifest.json")
    fs.pipe_file(staged[0], b"truncated")  # a damaged staged shard is found and written again
    resumed = run_compile(*args)
    clean = run_compile("s3://lake/raw/*.parquet", "s3://lake/ds6clean", *SMALL, *opts(endpoint))
    assert _hashes(resumed) == _hashes(clean)
    assert os.listdir(tmp_path / "cache" / "staging") == []


def test_compile_to_s3_from_the_command_line(s3, tmp_path):
    endpoint, fs = s3
    proc = cli("compile", "source.paths=[s3://lake/raw/part-00000.parquet]", "output.dir=s3://lake/cli",
               "engine=inprocess", f"hydra.run.dir={tmp_path}/hydra", *SMALL, *opts(endpoint))
    assert proc.returncode == 0, proc.stderr
    fs.invalidate_cache()
    assert fs.exists("lake/cli/manifest.json")


def test_a_users_object_named_like_the_lock_is_left_alone(s3):
    endpoint, fs = s3
    fs.pipe_file("lake/ds7.lock", b"not ours")
    with pytest.raises(ShardsmithError, match="ds7.lock' exists and is not a shardsmith lock"):
        run_compile("s3://lake/raw/*.parquet", "s3://lake/ds7", *SMALL, *opts(endpoint))
    assert fs.cat_file("lake/ds7.lock") == b"not ours"


def test_the_fit_cache_of_a_url_output_is_a_local_directory(tmp_path, monkeypatch):
    """fit.cache=auto goes beside output.dir; for an object store, into this machine's cache (it is
    local files), and a file:// URL is its path: never a directory named 's3:' or 'file:' here."""
    monkeypatch.setenv("SHARDSMITH_CACHE", str(tmp_path / "cache"))
    assert fitsource.cache_root("auto", "s3://bucket/ds") == str(tmp_path / "cache" / "fit")
    assert fitsource.cache_root("auto", f"file://{tmp_path}/out/ds") == str(tmp_path / "out" / fitsource.CACHE_DIR)
    assert fitsource.cache_root("off", "s3://bucket/ds") is None
