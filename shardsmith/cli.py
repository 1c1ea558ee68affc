"""The command line: ``shardsmith <command> [options] [key=value overrides]``.

Each command imports what it runs when it runs (``--help`` and ``inspect`` never pay for Dask,
Hydra or torch).

``compile`` runs under Hydra (overrides, ``-m`` multirun sweeps, run directories); the other
commands compose the same config tree without a run directory. A user error prints one line naming
the config key or file and exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from shardsmith.errors import ConfigError, ShardsmithError, did_you_mean  # lazy: each command imports only what it runs

USAGE = """usage: shardsmith <command> [options]

commands:
  demo         make demo data if absent (data/raw), compile it, show the manifest
  demo-data    write synthetic Criteo-like Parquet data (--rows, --out, --files, --seed)
  compile      compile the configured graph into shards (Hydra overrides; -m for sweeps)
  plan         print the optimised graph and the physical plan; reads no data (--passes)
  inspect      print a dataset's schema, splits, rows, sizes and stats (a manifest path)
  verify       re-hash every shard of a dataset; exit 1 on a mismatch (a manifest path)
  report       write report.html of a run's profile and print where the time went (a dataset or
               run directory); --compare MULTIRUN_DIR [--deadline 10m] ranks the runs of a sweep

examples:
  shardsmith demo
  shardsmith compile pipeline=criteo_synthetic engine.n_workers=2 output.dir=/tmp/out split.seed=7
  shardsmith compile -m engine.partition_bytes=64MB,256MB engine.n_workers=1,2
  shardsmith plan --passes pipeline=criteo_synthetic
  shardsmith report shards/criteo_synthetic
  shardsmith report --compare multirun/2026-11-26/10-00-00 --deadline 5m
"""

log = logging.getLogger("shardsmith")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    handlers = {"demo": cmd_demo, "demo-data": cmd_demo_data, "compile": cmd_compile, "plan": cmd_plan,
                "inspect": cmd_inspect, "verify": cmd_verify, "report": cmd_report}
    if command not in handlers:
        print(f"error: unknown command '{command}'{did_you_mean(command, handlers)}; see 'shardsmith --help'",
              file=sys.stderr)
        return 2
    try:
        return handlers[command](rest)
    except ShardsmithError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def _split_options(rest: list[str]) -> tuple[list[str], list[str]]:
    """Options (``--x`` / ``--x=1`` / ``-x 1``) for argparse; ``key=value`` words are overrides."""
    opts, overrides, i = [], [], 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-") and "=" not in word.split("=")[0][2:] and not _is_override(word):
            opts.append(word)
            if i + 1 < len(rest) and not rest[i + 1].startswith("-") and not _is_override(rest[i + 1]) \
                    and word not in ("--passes",):
                opts.append(rest[i + 1])
                i += 1
        else:
            overrides.append(word)
        i += 1
    return opts, overrides


def _is_override(word: str) -> bool:
    return "=" in word and not word.startswith("--")


# --- commands ----------------------------------------------------------------------------------------------
def cmd_demo_data(rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shardsmith demo-data", description="Write synthetic Criteo-like data.")
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--out", default="data/raw")
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(rest)
    if args.rows < 1:
        raise ShardsmithError("expected a positive row count", "--rows")
    from shardsmith.demo import generate  # lazy: each command imports only what it runs

    paths = generate(args.rows, args.out, args.files, args.seed)
    print(f"wrote {args.rows:,} rows in {len(paths)} file(s) under {args.out}")
    return 0


def cmd_demo(rest: list[str]) -> int:
    opts, overrides = _split_options(rest)
    p = argparse.ArgumentParser(prog="shardsmith demo", description="Demo data -> compile -> inspect.")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--data", default="data/raw")
    args = p.parse_args(opts)
    _setup_logging()
    from shardsmith.compiler.config import compose  # lazy: each command imports only what it runs
    from shardsmith.demo import generate  # lazy: each command imports only what it runs
    from shardsmith.runtime import compile_dataset  # lazy: each command imports only what it runs
    from shardsmith.shards.manifest import summary_lines  # lazy: each command imports only what it runs

    if not (os.path.isdir(args.data) and any(f.endswith(".parquet") for f in os.listdir(args.data))):
        paths = generate(args.rows, args.data)
        log.info(f"made demo data: {args.rows:,} rows in {len(paths)} file(s) under {args.data}")
    cfg = compose([f"source.paths=[{args.data}/*.parquet]", *overrides])
    result = compile_dataset(cfg, log=log.info)
    print("\n".join(summary_lines(result.manifest)))
    print(f"\nmanifest: {result.path}")
    return 0


def cmd_plan(rest: list[str]) -> int:
    opts, overrides = _split_options(rest)
    p = argparse.ArgumentParser(prog="shardsmith plan", description="Explain a compile; reads no data.")
    p.add_argument("--passes", action="store_true", help="show the graph after each optimiser pass")
    args = p.parse_args(opts)
    from shardsmith.compiler.config import compose  # lazy: each command imports only what it runs
    from shardsmith.runtime.explain import explain  # lazy: each command imports only what it runs

    print(explain(compose(overrides), passes=args.passes))
    return 0


def cmd_inspect(rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shardsmith inspect", description="Summarise a dataset.")
    p.add_argument("manifest")
    p.add_argument("--json", action="store_true", help="print the manifest itself")
    args = p.parse_args(rest)
    from shardsmith.shards.manifest import read_manifest, summary_lines  # lazy: each command imports only what it runs

    m = read_manifest(args.manifest)
    if args.json:
        m.pop("_dir", None)
        print(json.dumps(m, indent=1))
    else:
        print("\n".join(summary_lines(m)))
    return 0


def cmd_verify(rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shardsmith verify", description="Re-hash every shard.")
    p.add_argument("manifest")
    args = p.parse_args(rest)
    from shardsmith.shards.manifest import (  # lazy: each command imports only what it runs
        iter_shards,
        read_manifest,
        verify,
    )

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


def cmd_report(rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shardsmith report", description="Profile report of a run, or of a sweep.")
    p.add_argument("run_dir", help="a dataset or run directory (or a profile.json); with --compare, a multirun "
                                   "directory")
    p.add_argument("--compare", action="store_true", help="compare the runs of a sweep (one table, cost vs time)")
    p.add_argument("--deadline", help="with --compare: the longest acceptable wall time, e.g. 90s, 10m, 1.5h")
    p.add_argument("--cost-per-hour", type=float, help="price the runs at this node price per hour")
    p.add_argument("--out", help="where to write the HTML (default: report.html or compare.html in the directory)")
    p.add_argument("--no-html", action="store_true", help="print the summary only")
    args = p.parse_args(rest)
    from shardsmith.profiling import report  # lazy: each command imports only what it runs

    if args.compare:
        return report.compare_command(args.run_dir, args.deadline, args.cost_per_hour, args.out, not args.no_html)
    if args.deadline:
        raise ShardsmithError("--deadline goes with --compare", "--deadline")
    return report.report_command(args.run_dir, args.cost_per_hour, args.out, not args.no_html)


def cmd_compile(rest: list[str]) -> int:
    """Hydra runs this: overrides, multirun (-m), sweepers and run directories all work."""
    multirun = any(w in ("-m", "--multirun") for w in rest)
    if not multirun:  # fail fast, with one line, before Hydra sets up a run directory
        from shardsmith.compiler.config import compose  # lazy: each command imports only what it runs

        try:
            compose([w for w in rest if _is_override(w) and not w.lstrip("+~").startswith("hydra.")])
        except ConfigError as exc:
            if "HydraConfig was not set" not in str(exc):  # ${hydra:...} resolves only inside the run
                raise
    from shardsmith.compiler.config import config_dir, register_configs  # lazy: each command imports only what it runs

    register_configs()
    import hydra  # lazy: each command imports only what it runs

    @hydra.main(config_path=str(config_dir()), config_name="config", version_base=None)
    def _task(cfg) -> float | None:
        from shardsmith.compiler.config import from_omegaconf  # lazy: each command imports only what it runs
        from shardsmith.profiling.sweep import job_config, job_finish  # lazy: each command imports only what it runs
        from shardsmith.runtime import compile_dataset  # lazy: each command imports only what it runs

        try:
            result = compile_dataset(job_config(from_omegaconf(cfg), log.info), log=log.info)
            # The profile is copied into the run directory; a sweeper minimises cost (or wall time).
            return job_finish(result, log.info)
        except ShardsmithError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)

    saved = sys.argv
    sys.argv = ["shardsmith compile", *rest]
    try:
        _task()
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
