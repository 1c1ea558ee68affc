"""What writing WebDataset shards costs a compile, before and after batched samples, and how fast
``ShardDataset`` reads each layout back.

    python bench/loader/wds_compile.py --data DIR --base-code OLD_CHECKOUT --reps 3 --out RESULTS.json

``--data``: demo input (``shardsmith demo-data --rows 2000000 --out DIR``). ``--base-code``: a
checkout of the code before batched samples (``git archive 48bb4a8 | tar -x -C OLD_CHECKOUT``); the
current code is this checkout. Every compile runs in a fresh process (``python -m shardsmith compile
source.paths=[DIR] output.dir=... output.format=... engine=inprocess``) with PYTHONPATH set to the
code it measures; variants are interleaved, rep by rep, so that each meets similar machine load.
After the first rep of each variant, one process reads the train split back with ``ShardDataset``
(batch 1024, shuffled, every tensor touched). The output of each compile is deleted after use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW_CODE = os.path.dirname(os.path.dirname(HERE))
# name: (code, output formats, extra overrides, format to read back or None)
VARIANTS = {
    "before: parquet": ("base", "[parquet]", (), "parquet"),
    "before: parquet + webdataset (per row)": ("base", "[parquet,webdataset]", (), "webdataset"),
    "after: parquet": ("new", "[parquet]", (), "parquet"),
    "after: parquet + webdataset (1024 rows/sample)": ("new", "[parquet,webdataset]", (), "webdataset"),
    "after: parquet + webdataset (1024, zstd)": ("new", "[parquet,webdataset]",
                                                 ("output.webdataset.compression=zstd",), "webdataset"),
    "after: parquet + webdataset (1024, gzip)": ("new", "[parquet,webdataset]",
                                                 ("output.webdataset.compression=gzip",), "webdataset"),
    "after: parquet + webdataset (per row)": ("new", "[parquet,webdataset]",
                                              ("output.webdataset.rows_per_sample=1",), "webdataset"),
}
READER = """
import sys, time
from shardsmith.shards import ShardDataset
ds = ShardDataset(sys.argv[1], split="train", batch_size=1024, seed=0, format=sys.argv[2])
t0, n = time.perf_counter(), 0
for batch in ds:
    for t in batch.values():
        t.sum()
    n += len(batch["label"])
print(n, time.perf_counter() - t0)
"""


def env_for(code: str) -> dict:
    return {**os.environ, "PYTHONPATH": code}


def compile_once(code: str, data: str, out: str, formats: str, extra) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the compile process): the CPU time is the steadier figure
    on a shared machine."""
    cmd = [sys.executable, "-m", "shardsmith", "compile", f"source.paths=[{data}]", f"output.dir={out}",
           f"output.format={formats}", "engine=inprocess", "profiling.progress=off",
           f"hydra.run.dir={out}-hydra", *extra]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env_for(code), capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"compile failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return seconds, cpu


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def shard_bytes(out: str) -> dict:
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    width = sum(_itemsize(c["dtype"]) for c in m["schema"])
    sizes = {"parquet": 0, "webdataset": 0}
    for split in m["splits"].values():
        for s in split["shards"]:
            sizes[s["format"]] += s["bytes"]
    return {**sizes, "rows": m["rows"]["out"], "column_bytes": m["rows"]["out"] * width}


def _itemsize(dtype: str) -> int:
    import numpy as np

    return np.dtype(dtype).itemsize


def read_back(code: str, out: str, fmt: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", READER, out, fmt], env=env_for(code), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"read failed: {proc.stderr[-3000:]}")
    rows, seconds = proc.stdout.split()
    return {"rows": int(rows), "seconds": float(seconds), "rows_per_s": int(rows) / float(seconds)}


def one_run(name: str, codes: dict, data: str, tmp: str, read: bool) -> dict:
    code, formats, extra, fmt = VARIANTS[name]
    out = os.path.join(tmp, "out")
    load = os.getloadavg()[0]
    wall, cpu = compile_once(codes[code], data, out, formats, extra)
    run = {"wall_s": wall, "cpu_s": cpu, "load_1min": [load, os.getloadavg()[0]]}
    run.update(shard_bytes(out))
    if read:
        run["read"] = read_back(codes[code], out, fmt)
    shutil.rmtree(out)
    shutil.rmtree(out + "-hydra", ignore_errors=True)
    return run


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    commit = subprocess.run(["git", "-C", NEW_CODE, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2**20, 1), "python": platform.python_version(),
            "commit": commit}


def summarise(runs: dict) -> dict:
    out = {}
    for name, lst in runs.items():
        walls = [r["wall_s"] for r in lst]
        first = lst[0]
        out[name] = {"wall_median_s": statistics.median(walls), "walls_s": walls,
                     "cpu_median_s": statistics.median(r.get("cpu_s", float("nan")) for r in lst),
                     "tar_bytes": first["webdataset"], "parquet_bytes": first["parquet"],
                     "column_bytes": first["column_bytes"],
                     "tar_to_columns": first["webdataset"] / first["column_bytes"],
                     "read_rows_per_s": first.get("read", {}).get("rows_per_s")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--base-code", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    codes = {"base": os.path.abspath(args.base_code), "new": NEW_CODE}
    names = args.only or list(VARIANTS)
    runs: dict = {n: [] for n in names}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with tempfile.TemporaryDirectory(prefix="wds-compile-") as tmp:
        for rep in range(args.reps):
            for name in names:
                runs[name].append(one_run(name, codes, args.data, tmp, read=rep == 0))
                print(rep, name, json.dumps(runs[name][-1]), flush=True)
    result = {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "data": os.path.abspath(args.data), "reps": args.reps, "summary": summarise(runs), "runs": runs}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
