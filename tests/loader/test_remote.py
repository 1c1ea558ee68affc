"""Remote shards over fsspec against a real S3-compatible server (moto's server mode) on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from shardsmith.errors import InputError

pytest.importorskip("torch")
pytest.importorskip("moto.server")
from shardsmith.shards import ShardDataset, ShardLoader  # noqa: E402

from .conftest import batch_keys  # noqa: E402

s3fs = pytest.importorskip("s3fs")
BS = 1000


@pytest.fixture(scope="module")
def s3(dataset_dir):
    """A moto S3 server on a free loopback port, with the compiled dataset uploaded to s3://data/ds."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    opts = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"}}
    import boto3

    boto3.client("s3", endpoint_url=opts["endpoint_url"], region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="data")
    fs = s3fs.S3FileSystem(**opts)
    fs.put(dataset_dir + "/", "data/ds/", recursive=True)
    yield opts, fs
    fs.clear_instance_cache()
    server.stop()


def _keys(loader):
    return [batch_keys(b).tolist() for b in loader]


@pytest.mark.parametrize("fmt,workers", [("parquet", 0), ("webdataset", 0), ("parquet", 2)])
def test_remote_epoch_equals_the_local_one(s3, dataset_dir, fmt, workers):
    opts, _ = s3
    local = _keys(ShardLoader(ShardDataset(dataset_dir, batch_size=BS, seed=6, format=fmt), num_workers=workers))
    remote = ShardDataset("s3://data/ds", batch_size=BS, seed=6, format=fmt, storage_options=opts)
    assert _keys(ShardLoader(remote, num_workers=workers)) == local


def test_cached_shards_are_read_from_the_cache(s3, dataset_dir, tmp_path):
    opts, fs = s3
    fs.cp("data/ds/", "data/ds2/", recursive=True)
    cache = tmp_path / "cache"
    ds = ShardDataset("s3://data/ds2/manifest.json", split="valid", batch_size=BS, seed=1, storage_options=opts,
                      cache_dir=str(cache), verify=True)
    first = _keys(ds)
    cached = sorted(os.listdir(cache))
    assert len(cached) == len(ds.source.shards) and all(c.endswith(".parquet") for c in cached)
    fs.rm("data/ds2/valid", recursive=True)  # the server copy is gone: only the cache can serve it
    ds2 = ShardDataset("s3://data/ds2", split="valid", batch_size=BS, seed=1, storage_options=opts,
                       cache_dir=str(cache), verify=True)
    assert _keys(ds2) == first == _keys(ShardDataset(dataset_dir, split="valid", batch_size=BS, seed=1))


def test_missing_remote_shard_and_manifest_name_the_url(s3):
    opts, fs = s3
    fs.cp("data/ds/", "data/ds3/", recursive=True)
    victim = sorted(fs.ls("data/ds3/test"))[0]
    fs.rm(victim)
    ds = ShardDataset("s3://data/ds3", split="test", batch_size=BS, shuffle=False, storage_options=opts)
    with pytest.raises(InputError, match=f"s3://{victim}: shard listed in the manifest is missing"):
        list(ds)
    with pytest.raises(InputError, match="s3://data/nothing/manifest.json: no such manifest"):
        ShardDataset("s3://data/nothing", storage_options=opts)


def test_corrupt_remote_shard_fails_verification(s3, tmp_path):
    opts, fs = s3
    fs.cp("data/ds/", "data/ds4/", recursive=True)
    victim = sorted(p for p in fs.ls("data/ds4/valid") if p.endswith(".parquet"))[0]
    data = bytearray(fs.cat(victim))
    data[100] ^= 0x55
    fs.pipe(victim, bytes(data))
    ds = ShardDataset("s3://data/ds4", split="valid", batch_size=BS, storage_options=opts, verify=True,
                      cache_dir=str(tmp_path / "c"))
    with pytest.raises(InputError, match=f"s3://{victim}: checksum mismatch"):
        list(ds)
