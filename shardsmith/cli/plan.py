"""``shardsmith plan``: the optimised graph and the physical plan; reads no data."""

from __future__ import annotations

from shardsmith.cli.common import Parser, add_config_options, split_options
from shardsmith.compiler.config import compose
from shardsmith.runtime.explain import explain

DESCRIPTION = """Explain a compile without reading data: the engine that would run it and why, the graph
after the optimiser, the physical plan and the output schema. Takes the same key=value overrides,
config groups and config directories as 'shardsmith compile'."""

START_UP_ONLY = True  # all of it is start-up: the garbage collector stays off (cli/__init__.py)


def run(rest: list[str]) -> int:
    opts, overrides = split_options(rest, flags=("--passes", "-h", "--help"))
    p = Parser("plan", DESCRIPTION, epilog="overrides: key=value, +key=value, ~key (see 'shardsmith compile "
                                           "--help' for the keys)", add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="this help, with the config keys as composed")
    p.add_argument("--passes", action="store_true", help="show the graph after each optimiser pass")
    add_config_options(p)
    args = p.parse_args(opts)
    if args.help:
        from shardsmith.cli.config_help import config_help  # lazy: the key table is only for --help

        print(p.format_help() + "\n" + config_help(overrides, args.config_name, args.config_dir))
        return 0
    print(explain(compose(overrides, args.config_name, args.config_dir), passes=args.passes))
    return 0
