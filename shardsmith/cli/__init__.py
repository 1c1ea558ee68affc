"""The command line: ``shardsmith <command> [options] [key=value overrides]``.

One module per command (``cli/<command>.py``), each with a one-line ``SUMMARY`` and a
``run(argv) -> exit code``; :data:`COMMANDS` names them, and a command's module is imported only
when it runs, so ``--help`` and ``inspect`` never pay for Dask, Hydra or torch.

``compile`` runs under Hydra (overrides, ``-m`` multirun sweeps, run directories); the other
commands compose the same config tree without a run directory. A user error prints one line naming
the config key or file and exits 2.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import os
import signal
import sys
import threading

from shardsmith.cli import common
from shardsmith.cli.common import startup_over
from shardsmith.errors import ShardsmithError, did_you_mean, error_lines

# command -> (module, one-line summary): the summary is here so that --help imports no command
COMMANDS = {
    "demo": ("demo", "make demo data if absent (data/raw), compile it, show the manifest"),
    "demo-data": ("demo_data", "write synthetic Parquet data: Criteo-like rows, or --kind events (events, users, "
                               "items; --rows, --out, --files, --seed)"),
    "compile": ("compile", "compile the configured graph into shards (Hydra overrides; -m for sweeps)"),
    "plan": ("plan", "print the optimised graph and the physical plan; reads no data (--passes)"),
    "inspect": ("inspect", "print a dataset's schema, splits, rows, sizes and stats (a manifest path)"),
    "verify": ("verify", "re-hash every shard of a dataset; exit 1 on a mismatch (a manifest path)"),
    "drift": ("drift", "compare two datasets' distributions per column (PSI, JS, KS, null and OOV rates); "
                       "exit 1 when a threshold is crossed"),
    "lineage": ("lineage", "where each output column comes from: inputs, side tables, steps, fitted state "
                           "(--format text|json|openlineage)"),
    "diff": ("diff", "compare two datasets by content digests; the first split, shard, column and row that differ"),
    "warmup": ("warmup", "compile a plan's GPU kernels ahead into the kernel cache (--arch sm_90 without a GPU)"),
    "report": ("report", "write report.html of a run's profile and print where the time went; --compare "
                         "MULTIRUN_DIR ranks the runs of a sweep"),
}
EXAMPLES = """examples:
  shardsmith demo
  shardsmith compile pipeline=criteo_synthetic engine.n_workers=2 output.dir=/tmp/out split.seed=7
  shardsmith compile -m engine.partition_bytes=64MB,256MB engine.n_workers=1,2
  shardsmith plan --passes pipeline=criteo_synthetic
  shardsmith diff shards/run-a shards/run-b
  shardsmith warmup --arch sm_90 engine=gpu
  shardsmith report shards/criteo_synthetic
  shardsmith report --compare multirun/2026-11-26/10-00-00 --deadline 5m
"""


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: shardsmith <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n\n" + EXAMPLES + "\n'shardsmith <command> --help' describes a command's options."


def entry() -> None:
    """The ``shardsmith`` command (and ``python -m shardsmith``): :func:`main`, then the process ends
    without the interpreter tearing down every object and module, when nothing else is running.
    That teardown took 0.6-0.7 s of a 2,000,000-row compile's 9 s and 0.3 s of ``plan`` (the
    2-vCPU machine, timed from an exit hook to the process's end); nothing in it is ours to wait
    for. What Python's exit does before it is done here too: the atexit handlers run (logging's
    flush, Dask's and Hydra's clean-ups) and the standard streams are flushed. A thread still
    running takes Python's own exit, which waits for it; so does a process under a profiler or a
    tracer (``python -m cProfile -m shardsmith``, coverage), which writes its results at that exit."""
    common.FREEZE_STARTUP = True
    code = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()  # what Python's exit runs first (CPython's own, no public spelling)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone or a stream closed: nothing more to tell it
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    # A log line that cannot be written (its reader went away: 'shardsmith compile | head') is
    # dropped, not reported with a traceback on every later line; the work goes on.
    logging.raiseExceptions = False
    collecting = gc.isenabled()
    # Start-up (imports, Hydra's compose) makes ~10^5 objects that live as long as the process:
    # the cyclic collector's passes over them took a tenth of plan's time. A command's work turns
    # it on again (startup_over); plan is all start-up.
    gc.disable()
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    finally:
        if collecting:
            gc.enable()


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'{did_you_mean(command, COMMANDS)}; see 'shardsmith --help'",
              file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"shardsmith.cli.{COMMANDS[command][0]}")
        if not getattr(module, "START_UP_ONLY", False):
            startup_over()
        return module.run(rest)
    except ShardsmithError as exc:
        print("\n".join(error_lines(exc)), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _reader_gone() -> int:
    """The reader of our output left (``shardsmith inspect ... | head``): stop quietly, as a
    command killed by SIGPIPE does (exit 141), and let nothing write to the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE
