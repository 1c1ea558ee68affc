"""``shardsmith inspect``: a dataset's schema, splits, rows, sizes and statistics."""

from __future__ import annotations

import json

from shardsmith.cli.common import Parser
from shardsmith.shards.manifest import read_manifest, summary_lines


def run(rest: list[str]) -> int:
    p = Parser("inspect", "Summarise a dataset from its manifest: schema with roles and cardinalities, splits,\n"
                          "row accounting, shard sizes and column statistics.")
    p.add_argument("manifest", help="a manifest.json or the dataset directory holding it")
    p.add_argument("--json", action="store_true", help="print the manifest itself")
    args = p.parse_args(rest)
    m = read_manifest(args.manifest)
    if args.json:
        m.pop("_dir", None)
        print(json.dumps(m, indent=1))
    else:
        print("\n".join(summary_lines(m)))
    return 0
