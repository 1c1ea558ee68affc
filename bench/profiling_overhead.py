"""What profiling costs: the same compile with ``profiling.enabled`` true and false, interleaved
(on, off, off, on, ...) so that drift in the machine's load hits both alike; reports the median
wall time of each and the median of the paired differences.

    python bench/profiling_overhead.py --rows 2000000 --reps 6 --engine inprocess --engine cpu

Each compile runs in a fresh ``python -m shardsmith compile`` process; compared are the manifest's
``timings.wall`` (plan to the last shard written: the same clock for both settings) and the CPU
seconds of the whole command, which other work on a shared machine disturbs less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def compile_once(data: str, out: str, engine: str, enabled: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "shardsmith", "compile", f"source.paths=[{data}/*.parquet]", f"output.dir={out}",
           f"engine={engine}", f"profiling.enabled={str(enabled).lower()}", "hydra.run.dir=" + out + "-hydra",
           "profiling.progress=off"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    # CPU seconds of the whole command (Dask's worker processes included once reaped): less
    # sensitive than wall time to other work on a shared machine.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"engine": engine, "profiling": enabled, "wall_s": manifest["timings"]["wall"], "cpu_s": round(cpu, 3)}
    if enabled:
        acc = json.load(open(os.path.join(out, "profile.json")))["accounting"]
        row.update(recorder_s=acc["recorder_overhead_s"], sampler_cpu_s=acc["sampler_cpu_s"],
                   assembly_s=acc["assembly_s"])
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--reps", type=int, default=6, help="pairs per engine")
    p.add_argument("--engine", action="append", help="engine config names (default: inprocess and cpu)")
    p.add_argument("--work", default=os.path.join(HERE, "results", "profiling"))
    args = p.parse_args()
    engines = args.engine or ["inprocess", "cpu"]
    data = os.path.join(args.work, f"data-{args.rows}")
    if not os.path.isdir(data):
        from shardsmith.demo import generate

        generate(args.rows, data)
    rows = []
    for engine in engines:
        compile_once(data, os.path.join(args.work, "warm"), engine, True)  # page cache and imports warm
        for i in range(args.reps):
            order = (True, False) if i % 2 == 0 else (False, True)
            for enabled in order:
                rows.append(compile_once(data, os.path.join(args.work, "out"), engine, enabled))
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for engine in engines:
        on = [r["wall_s"] for r in rows if r["engine"] == engine and r["profiling"]]
        off = [r["wall_s"] for r in rows if r["engine"] == engine and not r["profiling"]]
        diffs = [a - b for a, b in zip(on, off)]
        cpu_on = [r["cpu_s"] for r in rows if r["engine"] == engine and r["profiling"]]
        cpu_off = [r["cpu_s"] for r in rows if r["engine"] == engine and not r["profiling"]]
        self_cost = [r["recorder_s"] + r["sampler_cpu_s"] + r["assembly_s"] for r in rows
                     if r["engine"] == engine and r["profiling"]]
        summary[engine] = {
            "pairs": len(diffs), "median_on_s": statistics.median(on), "median_off_s": statistics.median(off),
            "median_paired_diff_s": statistics.median(diffs),
            "overhead_pct": 100 * statistics.median(diffs) / statistics.median(off),
            "median_cpu_on_s": statistics.median(cpu_on), "median_cpu_off_s": statistics.median(cpu_off),
            "cpu_overhead_pct": 100 * statistics.median([a - b for a, b in zip(cpu_on, cpu_off)])
            / statistics.median(cpu_off),
            "self_measured_pct": 100 * statistics.median(self_cost) / statistics.median(on),
        }
    report = {"rows": args.rows, "cpu_count": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M"),
              "summary": summary}
    print(json.dumps(report, indent=1))
    os.makedirs(args.work, exist_ok=True)
    with open(os.path.join(args.work, "overhead.json"), "w") as f:
        json.dump({"report": report, "runs": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
