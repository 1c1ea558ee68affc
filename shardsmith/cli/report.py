"""``shardsmith report``: a run's profile as a page and a summary, or a sweep's runs compared."""

from __future__ import annotations

from shardsmith.cli.common import Parser
from shardsmith.errors import ShardsmithError
from shardsmith.profiling import report


def run(rest: list[str]) -> int:
    p = Parser("report", "Profile report of a run (report.html and where the time went), or, with --compare,\n"
                         "the runs of a sweep side by side.")
    p.add_argument("run_dir", help="a dataset or run directory (or a profile.json); with --compare, a multirun "
                                   "directory")
    p.add_argument("--compare", action="store_true", help="compare the runs of a sweep (one table, cost vs time)")
    p.add_argument("--deadline", help="with --compare: the longest acceptable wall time, e.g. 90s, 10m, 1.5h")
    p.add_argument("--cost-per-hour", type=float, help="price the runs at this node price per hour")
    p.add_argument("--out", help="where to write the HTML (default: report.html or compare.html in the directory)")
    p.add_argument("--no-html", action="store_true", help="print the summary only")
    args = p.parse_args(rest)
    if args.compare:
        return report.compare_command(args.run_dir, args.deadline, args.cost_per_hour, args.out, not args.no_html)
    if args.deadline:
        raise ShardsmithError("--deadline goes with --compare", "--deadline")
    return report.report_command(args.run_dir, args.cost_per_hour, args.out, not args.no_html)
