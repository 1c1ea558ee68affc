"""``shardsmith demo``: demo data if absent, a compile of it, and the manifest's summary."""

from __future__ import annotations

import os

from shardsmith.cli.common import Parser, log, setup_logging, split_options
from shardsmith.compiler.config import compose
from shardsmith.demo import generate
from shardsmith.runtime import compile_dataset
from shardsmith.shards.manifest import summary_lines


def run(rest: list[str]) -> int:
    opts, overrides = split_options(rest, flags=("-h", "--help"))
    p = Parser("demo", "Make synthetic Criteo-like demo data (if --data holds no Parquet files yet), compile it\n"
                       "with the default pipeline into shards/demo, and print the manifest's summary.\n"
                       "key=value overrides go to the compile, as with 'shardsmith compile'.")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of demo data to make")
    p.add_argument("--data", default="data/raw", help="the demo data's directory (reused when it holds Parquet files)")
    args = p.parse_args(opts)
    setup_logging()
    if not (os.path.isdir(args.data) and any(f.endswith(".parquet") for f in os.listdir(args.data))):
        paths = generate(args.rows, args.data)
        log.info(f"made demo data: {args.rows:,} rows in {len(paths)} file(s) under {args.data}")
    # Its own output directory: a later 'shardsmith compile' (shards/<name>) of other data is not
    # refused for finding the demo's dataset there.
    cfg = compose([f"source.paths=[{args.data}/*.parquet]", "output.dir=shards/demo", *overrides])
    result = compile_dataset(cfg, log=log.info)
    print("\n".join(summary_lines(result.manifest)))
    print(f"\nmanifest: {result.path}")
    return 0
