"""The demo pipeline end to end on the GPU engine against the CPU engine, on one machine, in one run.

    PYTHONPATH=/tmp/gpu-site:$PWD python bench/gpu/bench_e2e.py --rows 20000000 --out $OUT

Steps, each in its own process with its own time limit, each printing its result as it ends:
1. demo data (``shardsmith.demo``: the same bytes as ``shardsmith demo-data``), files written in
   parallel;
2. ``--gpu-runs`` compiles with engine=gpu (dask-cuda LocalCUDACluster), the first one cold;
3. ``--cpu-runs`` compiles with engine=cpu (a LocalCluster with one worker per core);
4. the outputs compared: same rows, schema, splits and shard boundaries; integer, categorical and
   hash columns identical; floats within 1e-6 relative; and which shards are byte-identical.
Medians and the manifests' timing breakdowns go to ``$OUT/bench_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def say(line: str) -> None:
    print(line, flush=True)


# --- 1. data ------------------------------------------------------------------------------------------
def _write_file(args) -> str:
    """One file of shardsmith.demo.generate's output: the same blocks, so the same bytes."""
    import pyarrow.parquet as pq

    from shardsmith.demo import BLOCK, block

    path, n, first_block, seed = args
    writer, index = None, first_block
    tmp = path + ".tmp"
    for start in range(0, n, BLOCK):
        table = block(min(BLOCK, n - start), seed, index)
        index += 1
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=BLOCK)
    writer.close()
    os.replace(tmp, path)
    return path


def generate(rows: int, out_dir: str, files: int, seed: int = 0) -> list[str]:
    """``shardsmith.demo.generate(rows, out_dir, files, seed)`` with the files written in parallel."""
    from shardsmith.demo import BLOCK

    os.makedirs(out_dir, exist_ok=True)
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    jobs, first = [], 0
    for fi, n in enumerate(per_file):
        jobs.append((os.path.join(out_dir, f"part-{fi:05d}.parquet"), n, first, seed))
        first += math.ceil(n / BLOCK)
    with ProcessPoolExecutor(max_workers=min(files, os.cpu_count() or 1)) as pool:
        return list(pool.map(_write_file, jobs))


# --- 2, 3. compiles ----------------------------------------------------------------------------------
def run_compile(engine: str, data: str, out: str, extra: list[str]) -> dict:
    """One compile in this process (called in a child process by :func:`timed_compile`)."""
    sys.path.insert(0, ROOT)
    from shardsmith.compiler.config import compose
    from shardsmith.runtime import compile_dataset

    cfg = compose([f"source.paths=[{data}/*.parquet]", f"engine={engine}", f"output.dir={out}",
                   "output.overwrite=true", *extra])
    t0 = time.perf_counter()
    result = compile_dataset(cfg, log=lambda line: print(f"    [{engine}] {line}", flush=True))
    wall = time.perf_counter() - t0
    return {"engine": engine, "wall": wall, "timings": result.manifest["timings"],
            "rows": result.manifest["rows"], "workers": result.manifest["engine"]["workers"],
            "partitions": result.manifest["plan"]["partitions"]}


def timed_compile(engine: str, data: str, out: str, extra: list[str], limit: float) -> dict | None:
    """A compile in a child process with a time limit: a hung cluster costs ``limit``, not the run."""
    result_file = out + ".result.json"
    if os.path.exists(result_file):
        os.remove(result_file)
    cmd = [sys.executable, os.path.abspath(__file__), "_run", engine, data, out, json.dumps(extra), result_file]
    try:
        proc = subprocess.run(cmd, timeout=limit, env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)
    except subprocess.TimeoutExpired:
        say(f"FAIL {engine} compile: no result within {limit:.0f} s")
        return None
    if proc.returncode != 0 or not os.path.exists(result_file):
        say(f"FAIL {engine} compile: exit code {proc.returncode}")
        return None
    with open(result_file) as f:
        return json.load(f)


# --- 4. comparison -----------------------------------------------------------------------------------
def compare(gpu_dir: str, cpu_dir: str) -> dict:
    """Shard by shard: the same boundaries, integer columns equal, floats within 1e-6 relative."""
    from shardsmith.shards.manifest import read_manifest

    g, c = read_manifest(os.path.join(gpu_dir, "manifest.json")), read_manifest(os.path.join(cpu_dir, "manifest.json"))
    problems = []
    if g["rows"] != c["rows"]:
        problems.append(f"row accounting differs: gpu {g['rows']} cpu {c['rows']}")
    if g["schema"] != c["schema"]:
        problems.append("schemas differ")
    pairs, identical = [], 0
    for split, info in c["splits"].items():
        gs, cs = g["splits"][split]["shards"], info["shards"]
        if [s["rows"] for s in gs] != [s["rows"] for s in cs]:
            problems.append(f"{split}: shard boundaries differ")
            continue
        for a, b in zip(gs, cs):
            identical += a["sha256"] == b["sha256"]
            pairs.append((os.path.join(gpu_dir, a["path"]), os.path.join(cpu_dir, b["path"])))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        for found in pool.map(lambda p: _compare_shard(*p), pairs):
            problems.extend(found)
    return {"shards": len(pairs), "byte_identical_shards": identical, "problems": problems[:20]}


def _compare_shard(gpu_path: str, cpu_path: str) -> list[str]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b = pq.read_table(gpu_path), pq.read_table(cpu_path)
    if a.schema != b.schema:
        return [f"{os.path.basename(gpu_path)}: schema differs"]
    out = []
    for name in b.column_names:
        x, y = a[name], b[name]
        if pa.types.is_floating(y.type):
            xv, yv = x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False)
            if not np.array_equal(np.isnan(xv), np.isnan(yv)):
                out.append(f"{gpu_path}: {name}: nulls differ")
            elif not np.allclose(xv, yv, rtol=1e-6, atol=1e-7, equal_nan=True):
                out.append(f"{gpu_path}: {name}: floats differ beyond 1e-6 relative")
        elif not x.equals(y):
            out.append(f"{gpu_path}: {name}: values differ")
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":  # a child of timed_compile
        engine, data, out, extra, result_file = sys.argv[2:7]
        result = run_compile(engine, data, out, json.loads(extra))
        with open(result_file, "w") as f:
            json.dump(result, f)
        return 0
    args = _parse()
    deadline = time.monotonic() + args.budget
    data = os.path.join(args.work, f"data-{args.rows}")
    report: dict = {"rows": args.rows, "date": time.strftime("%Y-%m-%d"), "cpu_cores": os.cpu_count()}
    sys.path.insert(0, ROOT)
    if not os.path.isdir(data) or len(os.listdir(data)) != args.files:
        t0 = time.perf_counter()
        generate(args.rows, data, args.files)
        say(f"RESULT demo data: {args.rows:,} rows in {args.files} files, {time.perf_counter() - t0:.1f} s")
    runs = _compiles(args, data, deadline)
    report["runs"] = runs
    for engine in ("gpu", "cpu"):
        walls = [r["wall"] for r in runs[engine]]
        report[f"{engine}_median_s"] = statistics.median(walls) if walls else None
    if runs["gpu"] and runs["cpu"]:
        _verdicts(args, runs, report)
    with open(os.path.join(args.out, "bench_e2e.json"), "w") as f:
        json.dump(report, f, indent=1)
    return 0 if runs["gpu"] and runs["cpu"] else 1


def _parse():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--gpu-runs", type=int, default=2)
    p.add_argument("--cpu-runs", type=int, default=1)
    p.add_argument("--work", default="/tmp/shardsmith-bench")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--gpu-limit", type=float, default=60, help="seconds per GPU compile")
    p.add_argument("--cpu-limit", type=float, default=150, help="seconds per CPU compile")
    p.add_argument("--budget", type=float, default=600, help="seconds for everything; later compiles get less")
    p.add_argument("--gpu-extra", nargs="*", default=[], help="config overrides for the GPU runs")
    p.add_argument("--gpu-engine", default="gpu", help="the engine config of the 'gpu' runs (cpu: a dry run)")
    return p.parse_args()


def _compiles(args, data: str, deadline: float) -> dict:
    """GPU cold, CPU, then the further GPU and CPU runs: when time runs short, the runs that a
    comparison needs have been made first."""
    order = [("gpu", 0), ("cpu", 0)] + [("gpu", i) for i in range(1, args.gpu_runs)] + \
        [("cpu", i) for i in range(1, args.cpu_runs)]
    order = [(e, i) for e, i in order if i < (args.gpu_runs if e == "gpu" else args.cpu_runs)]
    runs: dict = {"gpu": [], "cpu": []}
    for engine, i in order:
        left = deadline - time.monotonic() - 20  # kept for the comparison
        limit = min(args.gpu_limit if engine == "gpu" else args.cpu_limit, left)
        if limit < 10:
            say(f"FAIL {engine} run {i}: no time left in the budget")
            continue
        out = os.path.join(args.work, f"out-{engine}-{i}")
        extra = args.gpu_extra if engine == "gpu" else []
        r = timed_compile(args.gpu_engine if engine == "gpu" else "cpu", data, out, extra, limit)
        if r is None:
            continue
        runs[engine].append(r)
        t = r["timings"]
        say(f"RESULT {engine} run {i}{' (cold)' if i == 0 and engine == 'gpu' else ''}: {r['wall']:.2f} s, "
            f"{args.rows / r['wall'] / 1e6:.2f} M rows/s, {r['partitions']} partitions, {r['workers']} worker(s); "
            f"fit {t.get('fit_pass_0', 0):.2f} s, transform+write {t.get('transform_write', 0):.2f} s")
    return runs


def _verdicts(args, runs: dict, report: dict) -> None:
    warm = [r["wall"] for r in runs["gpu"][1:]] or [r["wall"] for r in runs["gpu"]]
    speedup = report["cpu_median_s"] / statistics.median(warm)
    report["speedup_warm_gpu_vs_cpu"] = speedup
    which = "warm runs" if len(runs["gpu"]) > 1 else "the cold run only"
    say(f"RESULT median: gpu {statistics.median(warm):.2f} s ({which}), cpu {report['cpu_median_s']:.2f} s: "
        f"{speedup:.1f}x")
    say(f"{'PASS' if speedup >= 10 else 'BELOW TARGET'} end-to-end speedup {speedup:.1f}x (target 10x)")
    t0 = time.perf_counter()
    cmp = compare(os.path.join(args.work, "out-gpu-0"), os.path.join(args.work, "out-cpu-0"))
    report["comparison"] = cmp
    verdict = "PASS" if not cmp["problems"] else "FAIL"
    say(f"{verdict} gpu output vs cpu output: {cmp['shards']} shards compared, {cmp['byte_identical_shards']} "
        f"byte-identical, {len(cmp['problems'])} problem(s) ({time.perf_counter() - t0:.1f} s)")
    for line in cmp["problems"]:
        say(f"    {line}")


if __name__ == "__main__":
    sys.exit(main())
