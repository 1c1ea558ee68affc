"""Start-up benchmark: ``shardsmith plan`` wall time, and a compile's start-up (process start to its
first task), each run in a fresh process.

``plan`` is timed from process start to exit. A compile's start-up is the time from just before the
process starts to the start of its first task on a partition: the compile's ``profile.json`` gives
its start (``started``, Unix time) and its tasks' spans (seconds from it). CPU seconds (user + system
of the process, from ``wait4``) are printed too: they move less than wall time on a shared machine.

Bytecode is written and reused (``PYTHONDONTWRITEBYTECODE`` is removed from the runs' environment,
as a pip install would have it), and one untimed run of each kind comes first. ``--tree DIR`` (given
twice or more) runs the shardsmith source tree at ``DIR`` (as ``PYTHONPATH``), alternating between
trees run by run, so that two commits are compared under the same load.

``--imports`` prints instead where ``plan``'s imports go (``python -X importtime``, medians): each
module's own time is counted to the package it belongs to, a standard library module's to the first
package outside the standard library that imported it.

Usage (from the repository root; the demo data as ``shardsmith demo-data --rows 20000`` writes it)::

    python bench/startup.py --reps 7
    python bench/startup.py --reps 7 --tree /tmp/old --tree .   # old against this checkout
    python bench/startup.py --imports --reps 7
    python bench/startup.py --floor --reps 7   # also: importing plan's libraries, and Hydra's compose
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str], env: dict, cwd: str) -> tuple[float, float, float]:
    """(start, end, CPU seconds) of one run of ``cmd`` in ``cwd`` (not a source tree: ``python -m``
    would import the one there); it must succeed."""
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    end = time.time()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    proc.stderr.close()
    return start, end, usage.ru_utime + usage.ru_stime


def plan_run(env: dict, data: str, work: str) -> tuple[float, float]:
    start, end, cpu = timed([sys.executable, "-m", "shardsmith", "plan", f"source.paths=[{data}]"], env, work)
    return end - start, cpu


def compile_run(env: dict, data: str, work: str) -> tuple[float, float]:
    """Seconds from process start to the first task on a partition, and the whole run's CPU seconds."""
    out = tempfile.mkdtemp(dir=work)
    cmd = [sys.executable, "-m", "shardsmith", "compile", f"source.paths=[{data}]", f"output.dir={out}/out",
           "fit.cache=off", f"hydra.run.dir={out}/hydra", "profiling.progress=off"]
    start, _, cpu = timed(cmd, env, work)
    with open(os.path.join(out, "out", "profile.json")) as f:
        profile = json.load(f)
    first = min(span[3] for span in profile["spans"] if span[2] is not None)
    return profile["started"] + first - start, cpu


KINDS = {"plan": plan_run, "compile start-up": compile_run}
# plan's floor: the libraries it cannot do without, then those and Hydra composing the config tree
# (the collector off, as the command line runs them)
LIBRARIES = ("import gc; gc.disable(); import numpy, pyarrow, pyarrow.parquet, pyarrow.compute, omegaconf, "
             "hydra.core.config_store, hydra._internal.hydra")


def libraries_run(env: dict, data: str, work: str) -> tuple[float, float]:
    start, end, cpu = timed([sys.executable, "-c", LIBRARIES], env, work)
    return end - start, cpu


def compose_run(env: dict, data: str, work: str) -> tuple[float, float]:
    code = f"{LIBRARIES}; from shardsmith.compiler.config import compose; compose(['source.paths=[{data}]'])"
    start, end, cpu = timed([sys.executable, "-c", code], env, work)
    return end - start, cpu


FLOOR = {"floor: libraries": libraries_run, "floor: + compose": compose_run}
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \| (\s*)(\S+)")


def import_costs(env: dict, data: str, work: str) -> collections.Counter:
    """Milliseconds of ``plan``'s imports by package (see the module's docstring)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "shardsmith", "plan", f"source.paths=[{data}]"]
    err = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, check=True).stderr
    rows = [(int(m[1]), len(m[2]) // 2, m[3]) for m in _IMPORT_LINE.finditer(err)]
    chain: list[tuple[int, str]] = []
    costs: collections.Counter = collections.Counter()
    for own_us, depth, name in reversed(rows):  # importtime prints a module after what it imports
        while chain and chain[-1][0] >= depth:
            chain.pop()
        chain.append((depth, name))
        owners = [n for _, n in chain if n.split(".")[0] not in sys.stdlib_module_names]
        if not owners:
            costs["standard library (the interpreter's start-up)"] += own_us / 1000
        else:
            package = _package(owners[-1])
            costs[package if owners[-1] == name else f"{package}: standard library"] += own_us / 1000
    return costs


def _package(module: str) -> str:
    """pyarrow's compute and Parquet modules apart from the rest of pyarrow, else the top package."""
    for part in ("pyarrow.compute", "pyarrow.parquet", "pyarrow._parquet"):
        if module == part or module.startswith(part + "."):
            return part.replace("_parquet", "parquet")
    return module.split(".")[0]


def print_imports(env: dict, data: str, work: str, reps: int) -> None:
    import_costs(env, data, work)  # writes the bytecode
    runs = [import_costs(env, data, work) for _ in range(reps)]
    totals = {k: statistics.median(r[k] for r in runs) for k in set().union(*runs)}
    print(f"plan's imports, ms (python -X importtime, medians of {reps}; load {os.getloadavg()[0]:.2f})")
    for package, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        if ms >= 1:
            print(f"| {package} | {ms:.0f} |")
    print(f"| all | {statistics.median(sum(r.values()) for r in runs):.0f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--data", default="data/raw", help="the input (default: data/raw)")
    p.add_argument("--tree", action="append", help="a shardsmith source tree to run (repeat to compare)")
    p.add_argument("--imports", action="store_true", help="where plan's imports go, in the first tree")
    p.add_argument("--floor", action="store_true", help="also time importing plan's libraries, and those with "
                                                        "Hydra's compose of the config")
    args = p.parse_args()
    trees = [os.path.abspath(t) for t in args.tree or ["."]]
    data = os.path.abspath(args.data)
    if args.imports:
        with tempfile.TemporaryDirectory() as work:
            print_imports(_env(trees[0]), data, work, args.reps)
        return 0
    kinds = {**KINDS, **FLOOR} if args.floor else KINDS
    results = {(kind, tree): [] for kind in kinds for tree in trees}
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.reps + 1):  # the first round is untimed: it writes the bytecode
            for kind, run in kinds.items():
                for tree in trees[rep % len(trees):] + trees[:rep % len(trees)]:
                    seconds = run(_env(tree), data, work)
                    if rep:
                        results[kind, tree].append(seconds)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end; medians of {args.reps}")
    for (kind, tree), runs in results.items():
        walls = sorted(w for w, _ in runs)
        print(f"{kind:18s} {tree}: {statistics.median(walls):.3f} s (min {walls[0]:.3f}, max {walls[-1]:.3f}), "
              f"CPU {statistics.median(c for _, c in runs):.2f} s; runs {', '.join(f'{w:.3f}' for w, _ in runs)}")
    return 0


def _env(tree: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": tree}


if __name__ == "__main__":
    sys.exit(main())
