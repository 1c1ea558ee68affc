"""``shardsmith plan``: the optimised graph and the physical plan; reads no data."""

from __future__ import annotations

import argparse

from shardsmith.cli.common import split_options
from shardsmith.compiler.config import compose
from shardsmith.runtime.explain import explain


def run(rest: list[str]) -> int:
    opts, overrides = split_options(rest, flags=("--passes",))
    p = argparse.ArgumentParser(prog="shardsmith plan", description="Explain a compile; reads no data.")
    p.add_argument("--passes", action="store_true", help="show the graph after each optimiser pass")
    args = p.parse_args(opts)
    print(explain(compose(overrides), passes=args.passes))
    return 0
