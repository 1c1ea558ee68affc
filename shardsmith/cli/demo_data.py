"""``shardsmith demo-data``: deterministic synthetic Criteo-like Parquet data."""

from __future__ import annotations

import argparse

from shardsmith.demo import generate
from shardsmith.errors import ShardsmithError


def run(rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shardsmith demo-data", description="Write synthetic Criteo-like data.")
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--out", default="data/raw")
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(rest)
    if args.rows < 1:
        raise ShardsmithError("expected a positive row count", "--rows")
    paths = generate(args.rows, args.out, args.files, args.seed)
    print(f"wrote {args.rows:,} rows in {len(paths)} file(s) under {args.out}")
    return 0
