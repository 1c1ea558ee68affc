"""``shardsmith diff A B``: whether two datasets hold the same content, by their manifests' content
digests; where they do not, the first split, shard, column and row that differ (only the shards
whose digests differ are read). Exit 0: the same; 1: different; 2: a bad input (a missing or
corrupt manifest or shard, one line on stderr)."""

from __future__ import annotations

from shardsmith.cli.common import Parser
from shardsmith.errors import ShardsmithError
from shardsmith.shards.diff import compare
from shardsmith.shards.manifest import read_manifest


def run(rest: list[str]) -> int:
    p = Parser("diff", "Whether two datasets hold the same content, by their manifests' content digests; where they\n"
                       "do not, the first split, shard, column and row that differ. Exit 0: the same; 1: different.")
    p.add_argument("a", help="a dataset directory or its manifest.json")
    p.add_argument("b", help="the other one")
    p.add_argument("--exact", action="store_true", help="floats bit for bit too (no tolerance)")
    p.add_argument("--rtol", type=float, help="relative tolerance for float columns")
    p.add_argument("--atol", type=float, help="absolute tolerance for float columns")
    args = p.parse_args(rest)
    report = compare(read_manifest(args.a), read_manifest(args.b), _tolerance(args))
    for line in report.lines + report.notes:
        print(line)
    return 0 if report.same else 1


def _tolerance(args) -> tuple[float, float] | None:
    """--exact, or --rtol / --atol (either given: the other is 0); None: the documented default."""
    if args.exact:
        return (0.0, 0.0)
    if args.rtol is None and args.atol is None:
        return None
    for key in ("rtol", "atol"):
        value = getattr(args, key)
        if value is not None and not value >= 0:
            raise ShardsmithError(f"expected a tolerance >= 0, got {value}", f"--{key}")
    return (args.rtol or 0.0, args.atol or 0.0)
