"""Shared fixtures of the profiling tests: small demo data and compiled runs with profiles."""

from __future__ import annotations

import json
import os

import pytest

from shardsmith.compiler.config import compose
from shardsmith.demo import generate
from shardsmith.runtime import compile_dataset

ROWS = 120_000


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> str:
    """120,000 demo rows in 2 files of 4 row groups each (about 1.5 MB per row group in the footer)."""
    out = tmp_path_factory.mktemp("raw")
    generate(ROWS, str(out), files=2, row_group_rows=15_000)
    return str(out)


def compile_with(data: str, out: str, *overrides: str, graph: list | None = None):
    """Compile the demo pipeline (or ``graph``) over ``data`` into ``out``; returns (result, profile)."""
    import dataclasses

    cfg = compose([f"source.paths=[{data}/*.parquet]", f"output.dir={out}", *overrides])
    if graph is not None:
        cfg = dataclasses.replace(cfg, graph=graph)
    result = compile_dataset(cfg, log=lambda *_: None)
    path = os.path.join(os.path.dirname(result.path), "profile.json")
    profile = json.load(open(path)) if os.path.exists(path) else None
    return result, profile


@pytest.fixture(scope="session")
def compile_fn():
    """``compile_fn(data, out, *overrides, graph=None) -> (result, profile)``."""
    return compile_with


@pytest.fixture(scope="session")
def inprocess_run(demo_data, tmp_path_factory):
    """The demo pipeline in-process over 4 partitions, priced at 3.6 per hour, reading the input
    once per pass (each flow from its own read; test_profile has the one-read flow)."""
    out = str(tmp_path_factory.mktemp("inproc") / "ds")
    return compile_with(demo_data, out, "engine=inprocess", "engine.partition_bytes=11MB", "engine.reads=per_pass",
                        "profiling.cost_per_hour=3.6", "profiling.project_to_bytes=10GB")
