"""What corruption detection costs the loader: ``ShardDataset`` with the default checks (Parquet:
shard size, footer sha256, page CRC-32; WebDataset tar: its sha256, once per shard) against the
same loop with them off (``shards.readers.CHECKSUMS = False``, a switch for this measurement only),
and against ``verify=True`` (the full sha256 of every shard before its first read).

    python bench/loader/checksums.py --rows 1000000 --runs 5

Two measures, each over ``--runs`` passes that alternate between the settings. The loop: one pass
reads the train split once, shuffled, batch 1024, num_workers=0, touching every tensor of every
batch. The reads: the same shards read whole by the loader's reading code (``ShardSource``, no
batches). Each pass records its wall time and its CPU time (``time.process_time``: this process's
threads); the cost of a setting is its median against the median with the checks off. On a shared
machine the CPU time is the figure to trust: the wall time swings with the other processes' load
(the 1-minute load average, ``os.getloadavg``, is recorded before each pass). Writes
``checksums.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

SETTINGS = {  # name -> (format, default checks on, verify=True)
    "parquet: no checks": ("parquet", False, False),
    "parquet: default checks": ("parquet", True, False),
    "parquet: verify=True": ("parquet", True, True),
    "webdataset: no checks": ("webdataset", False, False),
    "webdataset: default checks": ("webdataset", True, False),
}


def build(work: str, rows: int) -> str:
    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset

    raw, out = os.path.join(work, "raw"), os.path.join(work, "ds")
    # Always compiled: a dataset of this code and config is up to date in no time (its key matches),
    # one left by older code (another WebDataset layout, say) is replaced instead of measured.
    if not os.path.exists(os.path.join(raw, "part-00000.parquet")):
        generate(rows, raw)
    cfg = compose(["engine=inprocess", f"source.paths=[{raw}/*.parquet]", f"output.dir={out}",
                   "output.shard_rows=131072", "output.format=[parquet,webdataset]", "output.overwrite=true",
                   "fit.cache=off"])
    compile_dataset(cfg, log=lambda *a: None)
    return out


def one_pass(ds_dir: str, fmt: str, checks: bool, verify: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one shuffled pass over the train split."""
    from shardsmith.shards import ShardDataset, readers

    readers.CHECKSUMS = checks
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in ShardDataset(ds_dir, batch_size=1024, seed=1, format=fmt, verify=verify):
        for t in batch.values():
            t.sum()
    readers.CHECKSUMS = True
    return time.perf_counter() - t0, time.process_time() - c0


def read_split(ds_dir: str, fmt: str, checks: bool, verify: bool) -> tuple[float, float]:
    """(wall, CPU) seconds to read every row of the train split's shards through ShardSource."""
    from shardsmith.shards import order as od
    from shardsmith.shards import readers
    from shardsmith.shards.manifest import read_manifest

    m = read_manifest(ds_dir)
    shards = [s for s in m["splits"]["train"]["shards"] if s["format"] == fmt]
    cols = [c["name"] for c in m["schema"]]
    unit = int(m["config"]["resolved"]["output"]["row_group_rows"]) if fmt == "parquet" else None
    readers.CHECKSUMS = checks
    t0, c0 = time.perf_counter(), time.process_time()
    src = readers.ShardSource(m, shards, cols, verify=verify)
    for u in od.make_units([s["rows"] for s in shards], [unit] * len(shards)):
        src.read(u)
    readers.CHECKSUMS = True
    return time.perf_counter() - t0, time.process_time() - c0


def costs(times: dict[str, list[tuple[float, float]]]) -> dict:
    """Per setting with checks: its median wall and CPU time against the same with the checks off."""
    med = {name: [statistics.median(t[k] for t in v) for k in (0, 1)] for name, v in times.items()}
    out = {}
    for name in times:
        fmt = name.split(":")[0]
        if name != f"{fmt}: no checks":
            off = med[f"{fmt}: no checks"]
            out[name] = {"wall": med[name][0] / off[0] - 1, "cpu": med[name][1] / off[1] - 1}
    return {"median_wall_s": {n: m[0] for n, m in med.items()}, "median_cpu_s": {n: m[1] for n, m in med.items()},
            "cost": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/tmp/shardsmith-bench-checksums")
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    ds = build(args.work, args.rows)
    for setting in SETTINGS.values():  # warm the page cache and the imports
        one_pass(ds, *setting)
    measures = {"loop": one_pass, "reads": read_split}
    times = {m: {name: [] for name in SETTINGS} for m in measures}
    loads = []
    for _ in range(args.runs):
        for m, fn in measures.items():
            for name, setting in SETTINGS.items():
                loads.append(os.getloadavg()[0])
                times[m][name].append(fn(ds, *setting))
    loads.append(os.getloadavg()[0])
    report = {"date": time.strftime("%Y-%m-%d"), "rows": args.rows, "runs": args.runs,
              "machine": {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count()},
              "load_average_1m": {"min": min(loads), "max": max(loads)},
              "times_wall_cpu_s": times, **{m: costs(times[m]) for m in measures}}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "checksums.json"), "w") as f:
        json.dump(report, f, indent=1)
    for m in measures:
        for name, c in report[m]["cost"].items():
            print(f"{m:<5} {name:<28} CPU {100 * c['cpu']:+6.1f}%  wall {100 * c['wall']:+6.1f}%  "
                  f"(median CPU {report[m]['median_cpu_s'][name]:.2f} s against "
                  f"{report[m]['median_cpu_s'][name.split(':')[0] + ': no checks']:.2f} s)")
    print(f"load average (1 min) during the passes: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
