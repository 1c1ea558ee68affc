"""Serving benchmark: a compiled demo dataset's fitted graph applied in process (shardsmith.serve),
one row at a time (latency, p50 and p99) and in 10,000-row batches (throughput). Targets (issue 12):
p99 <= 1 ms for one row, >= 1,000,000 rows/s in batches.

    python bench/serve/run.py --rows 200000 --out bench/serve/results.json [--kernels numba] [--threads 2] [--profile]

One row arrives as a request would: a dict of scalars (the demo's 40 input columns), served by the
row path (shardsmith/backends/cpu/rows.py). A batch is a pyarrow Table of 10,000 input rows, served
by the lowerings. Wall and CPU time are both reported: on a shared machine the
CPU time of the calling process is the steadier figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="demo rows to compile (and serve from)")
    ap.add_argument("--work", default="/tmp/shardsmith-serve-bench")
    ap.add_argument("--singles", type=int, default=2000, help="one-row calls timed")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=20, help="batch calls timed")
    ap.add_argument("--kernels", default="auto", choices=("auto", "numpy", "numba"))
    ap.add_argument("--threads", type=int, default=1, help="Transform.load's threads (row ranges of a batch)")
    ap.add_argument("--profile", action="store_true", help="print where one-row calls spend their time")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)

    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset
    from shardsmith.serve import Transform

    raw_dir, ds = os.path.join(args.work, "raw"), os.path.join(args.work, f"ds-{args.rows}")
    if not os.path.exists(os.path.join(raw_dir, f"rows-{args.rows}")):
        generate(args.rows, raw_dir)
        open(os.path.join(raw_dir, f"rows-{args.rows}"), "w").close()
    compile_dataset(compose(["engine=inprocess", f"source.paths=[{raw_dir}/*.parquet]", f"output.dir={ds}",
                             "fit.cache=off", "output.overwrite=true"]), log=lambda *a: None)
    t = Transform.load(ds, kernels=args.kernels, threads=args.threads)
    first = sorted(p for p in os.listdir(raw_dir) if p.endswith(".parquet"))[0]
    raw = pq.read_table(os.path.join(raw_dir, first))
    singles = [raw.slice(i, 1).to_pylist()[0] for i in range(args.singles)]
    batch = raw.slice(0, args.batch)
    # Steady-state serving: Numba's kernels (kernels=auto) are built on a background thread that
    # holds the GIL for stretches; a server warms up before taking requests.
    t.warm(raw.slice(0, 10))
    result = {"machine": machine(), "kernels": args.kernels, "threads": args.threads, "rows_compiled": args.rows,
              "single": single_row(t, singles), "batch": batches(t, batch, args.batches)}
    if args.profile:
        result["profile"] = profile(t, singles[:300])
        print(result["profile"])
    print(json.dumps({k: v for k, v in result.items() if k != "profile"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def single_row(t, rows: list[dict]) -> dict:
    for r in rows[:50]:  # warm: caches of sorted vocabularies, imports
        t(r)
    wall, cpu = [], []
    for r in rows:
        c0, t0 = time.process_time(), time.perf_counter()
        t(r)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    ms = {name: np.asarray(xs) * 1e3 for name, xs in (("wall", wall), ("cpu", cpu))}
    return {f"{name}_{p}_ms": round(float(np.percentile(xs, q)), 4) for name, xs in ms.items()
            for p, q in (("p50", 50), ("p99", 99))} | {"calls": len(rows)}


def batches(t, batch: pa.Table, n: int) -> dict:
    for _ in range(3):  # warm: the allocator's first pages for batch-sized arrays, vocabulary tables
        t(batch)
    walls, cpus = [], []
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        t(batch)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"rows": batch.num_rows, "calls": n, "rows_per_s_wall": round(batch.num_rows / float(np.median(walls))),
            "rows_per_s_cpu": round(batch.num_rows / float(np.median(cpus)))}


def profile(t, rows: list[dict]) -> str:
    pr = cProfile.Profile()
    pr.enable()
    for r in rows:
        t(r)
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(20)
    return out.getvalue()


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"cpu": model, "cores": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "pyarrow": pa.__version__, "numpy": np.__version__}


if __name__ == "__main__":
    raise SystemExit(main())
