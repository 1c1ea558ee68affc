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

Usage (from the repository root; the demo data as ``shardsmith demo-data --rows 20000`` writes it)::

    python bench/startup.py --reps 7
    python bench/startup.py --reps 7 --tree /tmp/old --tree .   # old against this checkout
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--data", default="data/raw", help="the input (default: data/raw)")
    p.add_argument("--tree", action="append", help="a shardsmith source tree to run (repeat to compare)")
    args = p.parse_args()
    trees = [os.path.abspath(t) for t in args.tree or ["."]]
    data = os.path.abspath(args.data)
    results = {(kind, tree): [] for kind in KINDS for tree in trees}
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.reps + 1):  # the first round is untimed: it writes the bytecode
            for kind, run in KINDS.items():
                for tree in trees[rep % len(trees):] + trees[:rep % len(trees)]:
                    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
                    env["PYTHONPATH"] = tree
                    seconds = run(env, data, work)
                    if rep:
                        results[kind, tree].append(seconds)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end; medians of {args.reps}")
    for (kind, tree), runs in results.items():
        walls = sorted(w for w, _ in runs)
        print(f"{kind:17s} {tree}: {statistics.median(walls):.3f} s (min {walls[0]:.3f}, max {walls[-1]:.3f}), "
              f"CPU {statistics.median(c for _, c in runs):.2f} s; runs {', '.join(f'{w:.3f}' for w, _ in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
