"""Shared fixtures: small demo datasets and a compile helper that goes through the real config
composition, optimiser and executor."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.compiler.config import compose
from shardsmith.compiler.executor import compile_dataset
from shardsmith.demo import generate


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> str:
    """30,000 demo rows in 3 files of 8,192-row row groups (several partitions per file)."""
    d = tmp_path_factory.mktemp("demo")
    generate(30_000, str(d), files=3, row_group_rows=4096)
    return str(d)


def run_compile(source_glob: str, out_dir, *overrides, engine: str = "inprocess", passes=None):
    cfg = compose([f"source.paths=[{source_glob}]", f"output.dir={out_dir}", f"engine={engine}", *overrides])
    return compile_dataset(cfg, log=lambda *_: None, passes=passes)


def write_table(path, table: pa.Table, row_group_rows: int = 1000) -> str:
    pq.write_table(table, path, row_group_size=row_group_rows)
    return str(path)


def read_split(result, split: str = "train") -> pa.Table:
    root = os.path.dirname(result.path)
    shards = [s for s in result.manifest["splits"][split]["shards"] if s["format"] == "parquet"]
    return pa.concat_tables([pq.read_table(os.path.join(root, s["path"])) for s in shards]) if shards else None


def cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "shardsmith", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
