"""Corrupt shards are detected by default: a flipped byte anywhere in a Parquet shard (pages, page
headers, footer) or a WebDataset tar either fails the read with an InputError naming the shard, or
changes nothing that is read (page-header statistics); never different values. And a manifest
cannot send a reader outside its dataset."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from shardsmith.errors import InputError
from shardsmith.shards import order as od
from shardsmith.shards.manifest import read_manifest, verify
from shardsmith.shards.readers import ShardSource
from tests.conftest import cli

from .conftest import ROW_GROUP_ROWS


def _read_all(manifest, shard, columns):
    """Every row of one shard through the loader's reading code, as it reads by default."""
    src = ShardSource(manifest, [shard], columns)
    units = od.make_units([shard["rows"]], [ROW_GROUP_ROWS if shard["format"] == "parquet" else None])
    parts = [src.read(u) for u in units]
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}


def _positions(path: str, n: int, seed: int = 3) -> list[int]:
    """Byte positions to damage: every byte of the footer's tail and of the first page headers, and
    ``n`` spread over the rest of the file."""
    size = os.path.getsize(path)
    md = pq.ParquetFile(path).metadata
    col = md.row_group(0).column(0)
    first_page = col.dictionary_page_offset or col.data_page_offset
    headers = list(range(first_page, first_page + 40))  # a page header is a few dozen bytes
    rng = random.Random(seed)
    return sorted(set(headers + list(range(size - 64, size)) + rng.sample(range(size), n)))


def test_flipped_bytes_in_a_parquet_shard_are_caught(dataset_copy):
    m = read_manifest(dataset_copy)
    shard = next(s for s in m["splits"]["valid"]["shards"] if s["format"] == "parquet")
    path = os.path.join(dataset_copy, shard["path"])
    columns = [c["name"] for c in m["schema"]]
    clean = _read_all(m, shard, columns)
    original = open(path, "rb").read()
    counts = {"caught": 0, "same": 0, "silent": 0}
    positions = _positions(path, 300)
    for pos in positions:
        damaged = bytearray(original)
        damaged[pos] ^= 1 << (pos % 8)
        with open(path, "wb") as f:
            f.write(damaged)
        try:
            got = _read_all(m, shard, columns)
        except InputError as exc:
            assert path in str(exc)
            counts["caught"] += 1
            continue
        same = all(np.array_equal(got[c], clean[c], equal_nan=got[c].dtype.kind == "f") for c in columns)
        counts["same" if same else "silent"] += 1
    print(f"{len(positions)} flipped bytes in a {len(original):,}-byte shard: {counts}")
    # Never a changed value. Not caught (by default) and harmless: page header fields that no value
    # depends on (the page's min/max statistics, is_sorted), which neither the page CRC nor the
    # footer hash covers; verify=True (the full sha256) catches those too.
    assert counts["silent"] == 0, counts
    assert counts["caught"] >= 0.95 * len(positions), counts


def test_a_flipped_byte_in_a_tar_shard_is_caught(dataset_copy):
    m = read_manifest(dataset_copy)
    shard = next(s for s in m["splits"]["valid"]["shards"] if s["format"] == "webdataset")
    path = os.path.join(dataset_copy, shard["path"])
    original = open(path, "rb").read()
    columns = [c["name"] for c in m["schema"]]
    for pos in random.Random(5).sample(range(len(original)), 20):
        damaged = bytearray(original)
        damaged[pos] ^= 0x10
        open(path, "wb").write(damaged)
        with pytest.raises(InputError, match=f"{path}: checksum mismatch"):
            _read_all(m, shard, columns)


def test_a_truncated_or_padded_shard_is_caught(dataset_copy):
    m = read_manifest(dataset_copy)
    shard = next(s for s in m["splits"]["test"]["shards"] if s["format"] == "parquet")
    path = os.path.join(dataset_copy, shard["path"])
    original = open(path, "rb").read()
    for damaged in (original[:-1000], original + b"\0" * 10):
        open(path, "wb").write(damaged)
        with pytest.raises(InputError, match=f"{path}: corrupt shard: {len(damaged)} bytes"):
            _read_all(m, shard, ["label"])


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "train/../../outside.parquet", "s3://b/x"])
def test_a_manifest_cannot_point_outside_its_dataset(dataset_copy, bad):
    path = os.path.join(dataset_copy, "manifest.json")
    doc = json.load(open(path))
    doc["splits"]["train"]["shards"][0]["path"] = bad
    json.dump(doc, open(path, "w"))
    with pytest.raises(InputError, match=f"shard path '{bad}' leaves the dataset directory"):
        read_manifest(dataset_copy)
    proc = cli("verify", path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: shard path '{bad}'"), proc.stderr
    torch = pytest.importorskip("torch")  # noqa: F841 - the loader needs it
    from shardsmith.shards import ShardDataset

    with pytest.raises(InputError, match="leaves the dataset directory"):
        ShardDataset(dataset_copy)


def test_verify_still_rehashes_everything(dataset_copy):
    m = read_manifest(dataset_copy)
    assert verify(m) == []
    shard = m["splits"]["train"]["shards"][0]
    with open(os.path.join(dataset_copy, shard["path"]), "r+b") as f:
        f.seek(shard["bytes"] // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    assert len(verify(m)) == 1 and "sha256" in verify(m)[0]
