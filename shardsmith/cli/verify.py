"""``shardsmith verify``: re-hash every shard of a dataset against its manifest."""

from __future__ import annotations

import sys

from shardsmith.cli.common import Parser
from shardsmith.shards.manifest import iter_shards, read_manifest, verify


def run(rest: list[str]) -> int:
    p = Parser("verify", "Re-hash every shard of a dataset and compare with its manifest: exit 0 when all\n"
                         "match, 1 (naming each file) when one does not.")
    p.add_argument("manifest", help="a manifest.json or the dataset directory holding it")
    args = p.parse_args(rest)
    m = read_manifest(args.manifest)
    problems = verify(m)
    for line in problems:
        print(f"mismatch: {line}", file=sys.stderr)
    n = sum(1 for _ in iter_shards(m))
    if problems:
        print(f"{len(problems)} of {n} shard file(s) do not match the manifest", file=sys.stderr)
        return 1
    print(f"ok: {n} shard file(s) match the manifest")
    return 0
