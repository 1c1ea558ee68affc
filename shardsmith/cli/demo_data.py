"""``shardsmith demo-data``: deterministic synthetic Parquet data: Criteo-like rows (``--kind
criteo``), or a related set of events, users and items (``--kind events``, for
configs/pipeline/events.yaml)."""

from __future__ import annotations

from shardsmith.cli.common import Parser
from shardsmith.demo import generate, generate_events
from shardsmith.errors import ShardsmithError

DEFAULT_OUT = {"criteo": "data/raw", "events": "data/events"}


def run(rest: list[str]) -> int:
    p = Parser("demo-data", "Write deterministic synthetic Parquet data: Criteo-like rows (a label, 13 integer\n"
                            "counts I1..I13, some missing, and 26 categoricals C1..C26, as part-NNNNN.parquet),\n"
                            "or events with users and items tables (--kind events).")
    p.add_argument("--kind", choices=sorted(DEFAULT_OUT), default="criteo",
                   help="criteo: label, I1..I13, C1..C26; events: events/, users/ and items/ tables")
    p.add_argument("--rows", type=int, default=2_000_000, help="rows in all; events for --kind events")
    p.add_argument("--out", default=None, help="the directory to write (default data/raw; data/events for events)")
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
    out = args.out or DEFAULT_OUT[args.kind]
    if args.kind == "events":
        paths = generate_events(args.rows, out, args.files, args.seed)
        print(f"wrote {args.rows:,} events in {len(paths['events'])} file(s), {out}/users and {out}/items")
        return 0
    paths = generate(args.rows, out, args.files, args.seed)
    print(f"wrote {args.rows:,} rows in {len(paths)} file(s) under {out}")
    return 0
