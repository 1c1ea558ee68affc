"""Fixtures for the loader and WebDataset tests: a small dataset made by the real compiler from demo
data, and an independent reference of its rows read with pyarrow."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

ROWS = 24_000
SHARD_ROWS = 5_000
ROW_GROUP_ROWS = 1_000


# WebDataset layouts compiled from the same input as dataset_dir: (rows_per_sample, compression).
# 300 rows per sample: samples that straddle the loader's units (row groups of 1,000 rows).
LAYOUTS = {"batched": (1024, "none"), "per-row": (1, "none"), "batched-zstd": (300, "zstd"),
           "batched-gzip": (1024, "gzip"), "per-row-gzip": (1, "gzip")}


def compile_demo(root: str, rows: int = ROWS, extra: tuple = (), raw: str | None = None, out: str = "out") -> str:
    """Demo data compiled to Parquet + WebDataset shards under ``root`` (from ``raw`` when given);
    returns the output dir."""
    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset

    raw = raw or os.path.join(root, "raw")
    if not os.path.isdir(raw):
        generate(rows, raw, files=2, row_group_rows=4096)
    out = os.path.join(root, out)
    cfg = compose(["engine=inprocess", f"source.paths=[{raw}/*.parquet]", f"output.dir={out}",
                   f"output.shard_rows={SHARD_ROWS}", f"output.row_group_rows={ROW_GROUP_ROWS}",
                   "output.format=[parquet,webdataset]", *extra])
    compile_dataset(cfg, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> str:
    return compile_demo(str(tmp_path_factory.mktemp("loader-ds")))


@pytest.fixture(scope="session")
def layouts(dataset_dir) -> dict[str, str]:
    """The input of dataset_dir compiled once per WebDataset layout: layout name -> output dir."""
    root = os.path.dirname(dataset_dir)
    out = {}
    for name, (per, comp) in LAYOUTS.items():
        extra = (f"output.webdataset.rows_per_sample={per}", f"output.webdataset.compression={comp}")
        out[name] = dataset_dir if name == "batched" else compile_demo(root, extra=extra, out=name)
    return out


@pytest.fixture()
def dataset_copy(dataset_dir, tmp_path) -> str:
    """A private copy, for tests that damage it."""
    dst = str(tmp_path / "ds")
    shutil.copytree(dataset_dir, dst)
    return dst


def row_keys(columns: dict) -> np.ndarray:
    """One bytes key per row from all numeric columns (a row's identity: rows here are unique)."""
    names = sorted(columns)
    mat = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])
    mat = np.ascontiguousarray(mat)
    return mat.view(np.dtype((np.void, mat.shape[1] * 8))).ravel()


def batch_keys(batch) -> np.ndarray:
    return row_keys({k: v.numpy() for k, v in batch.items()})


@pytest.fixture(scope="session")
def reference(dataset_dir):
    """The train split's rows in manifest order, read with pyarrow (independent of the loader)."""
    import json

    with open(os.path.join(dataset_dir, "manifest.json")) as f:
        manifest = json.load(f)
    shards = [s for s in manifest["splits"]["train"]["shards"] if s["format"] == "parquet"]
    tables = [pq.read_table(os.path.join(dataset_dir, s["path"])) for s in shards]
    cols = {name: np.concatenate([t.column(name).to_numpy() for t in tables]) for name in tables[0].column_names}
    keys = row_keys(cols)
    assert len(np.unique(keys)) == len(keys), "the demo rows must be unique for these tests"
    return {"columns": cols, "keys": keys, "manifest": manifest}
