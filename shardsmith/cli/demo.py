"""``shardsmith demo``: demo data if absent, a compile of it, and the manifest's summary."""

from __future__ import annotations

import argparse
import os

from shardsmith.cli.common import log, setup_logging, split_options
from shardsmith.compiler.config import compose
from shardsmith.demo import generate
from shardsmith.runtime import compile_dataset
from shardsmith.shards.manifest import summary_lines


def run(rest: list[str]) -> int:
    opts, overrides = split_options(rest)
    p = argparse.ArgumentParser(prog="shardsmith demo", description="Demo data -> compile -> inspect.")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--data", default="data/raw")
    args = p.parse_args(opts)
    setup_logging()
    if not (os.path.isdir(args.data) and any(f.endswith(".parquet") for f in os.listdir(args.data))):
        paths = generate(args.rows, args.data)
        log.info(f"made demo data: {args.rows:,} rows in {len(paths)} file(s) under {args.data}")
    cfg = compose([f"source.paths=[{args.data}/*.parquet]", *overrides])
    result = compile_dataset(cfg, log=log.info)
    print("\n".join(summary_lines(result.manifest)))
    print(f"\nmanifest: {result.path}")
    return 0
