"""``shardsmith lineage``: where each output column of a dataset comes from, as text, JSON, or an
OpenLineage run event."""

from __future__ import annotations

import json

from shardsmith.cli.common import Parser
from shardsmith.shards.lineage import lineage_of, openlineage_event, text_lines
from shardsmith.shards.manifest import read_manifest


def run(rest: list[str]) -> int:
    p = Parser("lineage", "Column lineage of a dataset: for each output column its input columns, side tables,\n"
                          "steps and fitted state, and the filters and split that chose its rows.")
    p.add_argument("manifest", help="a dataset directory or its manifest.json")
    p.add_argument("column", nargs="?", help="one output column (default: every column)")
    p.add_argument("--format", choices=("text", "json", "openlineage"), default="text",
                   help="text (default), the manifest's lineage section as JSON, or an OpenLineage run event")
    p.add_argument("--namespace", default="shardsmith", help="the OpenLineage job namespace (default: shardsmith)")
    args = p.parse_args(rest)
    manifest = read_manifest(args.manifest)
    if args.format == "openlineage":
        event = openlineage_event(manifest, args.namespace)
        if args.column:  # one column: the event keeps that column's lineage only
            lineage_of(manifest, args.column)
            facet = event["outputs"][0]["facets"]["columnLineage"]
            facet["fields"] = {args.column: facet["fields"][args.column]}
        print(json.dumps(event, indent=1))
    elif args.format == "json":
        print(json.dumps(lineage_of(manifest, args.column), indent=1))
    else:
        print("\n".join(text_lines(manifest, args.column)))
    return 0
