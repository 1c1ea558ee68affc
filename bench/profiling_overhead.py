"""What profiling costs: the same compile with ``profiling.enabled`` true and false, interleaved
(on, off, off, on, ...) so that drift in the machine's load hits both alike; reports the median
wall time of each and the median of the paired differences.

    python bench/profiling_overhead.py --rows 2000000 --reps 6 --engine inprocess --engine cpu

Each compile runs in a fresh ``python -m shardsmith compile`` process; compared are the manifest's
``timings.wall`` (plan to the last shard written: the same clock for both settings) and the CPU
seconds of the whole command, which other work on a shared machine disturbs less.
``--same-process`` runs the in-process engine in this process instead (no interpreter start-up in
the figures; CPU time from ``time.process_time``, sampler thread included), which allows many more
pairs in the same time.
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


def compile_here(data: str, out: str, enabled: bool) -> dict:
    from shardsmith.compiler.config import compose
    from shardsmith.runtime import compile_dataset

    shutil.rmtree(out, ignore_errors=True)
    cfg = compose([f"source.paths=[{data}/*.parquet]", f"output.dir={out}", "engine=inprocess",
                   f"profiling.enabled={str(enabled).lower()}", "profiling.progress=off"])
    cpu = time.process_time()
    result = compile_dataset(cfg, log=lambda *_: None)
    row = {"engine": "inprocess (same process)", "profiling": enabled, "wall_s": result.timings["wall"],
           "cpu_s": round(time.process_time() - cpu, 4)}
    if enabled:
        acc = json.load(open(os.path.join(out, "profile.json")))["accounting"]
        row.update(recorder_s=acc["recorder_overhead_s"], sampler_cpu_s=acc["sampler_cpu_s"],
                   assembly_s=acc["assembly_s"])
    return row


def _quartiles(values: list[float]) -> list[float] | None:
    return [round(q, 4) for q in statistics.quantiles(values, n=4)] if len(values) >= 2 else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--reps", type=int, default=6, help="pairs per engine")
    p.add_argument("--engine", action="append", help="engine config names (default: inprocess and cpu)")
    p.add_argument("--work", default=os.path.join(HERE, "results", "profiling"))
    p.add_argument("--same-process", action="store_true", help="in-process engine, in this process")
    args = p.parse_args()
    engines = ["inprocess (same process)"] if args.same_process else args.engine or ["inprocess", "cpu"]
    data = os.path.join(args.work, f"data-{args.rows}")
    if not os.path.isdir(data):
        from shardsmith.demo import generate

        generate(args.rows, data)
    rows = []
    for engine in engines:
        def run(enabled, out, engine=engine):
            if args.same_process:
                return compile_here(data, out, enabled)
            return compile_once(data, out, engine, enabled)

        run(True, os.path.join(args.work, "warm"))  # page cache and imports warm
        for i in range(args.reps):
            order = (True, False) if i % 2 == 0 else (False, True)
            for enabled in order:
                rows.append(run(enabled, os.path.join(args.work, "out")))
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
            # The spread of the paired differences: how much of the above is the machine's noise.
            "wall_diff_quartiles_s": _quartiles(diffs),
            "cpu_diff_quartiles_s": _quartiles([a - b for a, b in zip(cpu_on, cpu_off)]),
            "self_measured_pct": 100 * statistics.median(self_cost) / statistics.median(on),
        }
    report = {"rows": args.rows, "cpu_count": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M"),
              "load_average": os.getloadavg(), "summary": summary}
    print(json.dumps(report, indent=1))
    os.makedirs(args.work, exist_ok=True)
    name = "overhead-same-process.json" if args.same_process else "overhead.json"
    with open(os.path.join(args.work, name), "w") as f:
        json.dump({"report": report, "runs": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
