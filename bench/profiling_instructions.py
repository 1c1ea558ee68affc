"""What profiling costs, counted in instructions: immune to other work on a shared machine, which
makes wall and CPU times too noisy to resolve a 1% difference (see profiling_overhead.py).

Runs the same in-process compile under ``valgrind --tool=callgrind`` with profiling on and off,
and a third process that only imports and composes the config; the compile's instructions are
``off - imports`` and profiling's are ``on - off``. Valgrind slows a run ~80x, so the samplers'
interval is stretched (default 5 s) to take about as many samples as the native run takes at 0.1 s.

    python bench/profiling_instructions.py --rows 200000            # needs valgrind (apt-get install valgrind)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def child(mode: str, data: str, work: str, interval: float) -> None:
    from shardsmith.compiler.config import compose

    out = os.path.join(work, f"out-{mode}")
    cfg = compose([f"source.paths=[{data}/*.parquet]", f"output.dir={out}", "engine=inprocess",
                   "engine.partition_bytes=16MB", f"profiling.enabled={str(mode == 'on').lower()}",
                   f"profiling.sample_interval={interval}", "profiling.progress=off"])
    import pyarrow.parquet  # noqa: F401  (the compile's own imports, in every mode)

    from shardsmith.runtime import compile_dataset

    if mode != "imports":
        shutil.rmtree(out, ignore_errors=True)
        compile_dataset(cfg, log=lambda *_: None)


def count(mode: str, data: str, work: str, interval: float) -> subprocess.Popen:
    cmd = ["valgrind", "--tool=callgrind", "--cache-sim=no", "--branch-sim=no",
           f"--callgrind-out-file={os.path.join(work, 'callgrind.' + mode)}",
           sys.executable, os.path.abspath(__file__), "--child", mode, "--data", data, "--work", work,
           "--interval", str(interval)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONHASHSEED="0"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--work", default=os.path.join(HERE, "results", "profiling-instructions"))
    p.add_argument("--data")
    p.add_argument("--child", choices=("imports", "off", "on"))
    args = p.parse_args()
    if args.child:
        child(args.child, args.data, args.work, args.interval)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    data = args.data or os.path.join(args.work, f"data-{args.rows}")
    if not os.path.isdir(data):
        from shardsmith.demo import generate

        generate(args.rows, data, files=2)
    procs = {m: count(m, data, args.work, args.interval) for m in ("imports", "off", "on")}  # counts don't mind sharing
    refs = {}
    for mode, proc in procs.items():
        text = proc.communicate()[0]
        refs[mode] = int(re.search(r"I\s+refs:\s+([\d,]+)", text).group(1).replace(",", ""))
    compile_ir, added = refs["off"] - refs["imports"], refs["on"] - refs["off"]
    print(f"instructions: imports {refs['imports']:,}  off {refs['off']:,}  on {refs['on']:,}")
    print(f"profiling adds {added:,} instructions to a compile of {compile_ir:,}: {100 * added / compile_ir:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
