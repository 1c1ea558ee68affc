"""``shardsmith demo-data``: deterministic synthetic Criteo-like Parquet data."""

from __future__ import annotations

from shardsmith.cli.common import Parser
from shardsmith.demo import generate
from shardsmith.errors import ShardsmithError


def run(rest: list[str]) -> int:
    p = Parser("demo-data", "Write deterministic synthetic Criteo-like Parquet data: a label, 13 integer counts\n"
                            "(I1..I13, some missing) and 26 categoricals (C1..C26), as part-NNNNN.parquet.")
    p.add_argument("--rows", type=int, default=2_000_000, help="rows in all")
    p.add_argument("--out", default="data/raw", help="the directory to write")
    p.add_argument("--files", type=int, default=None,
                   help="files to split the rows over (default: one per 500,000 rows)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator: the same seed gives the same bytes")
    args = p.parse_args(rest)
    if args.rows < 1:
        raise ShardsmithError("expected a positive row count", "--rows")
    if args.files is not None and not 1 <= args.files <= args.rows:
        raise ShardsmithError(f"expected 1 .. --rows files, got {args.files}", "--files")
    if not 0 <= args.seed < 2**63:
        raise ShardsmithError(f"expected a seed in 0 .. 2**63-1, got {args.seed}", "--seed")
    paths = generate(args.rows, args.out, args.files, args.seed)
    print(f"wrote {args.rows:,} rows in {len(paths)} file(s) under {args.out}")
    return 0
